"""Cloud Function `regress`: the hourly bike count at a Paris counter."""

import functions_framework
import numpy as np

from velocast.service import Service, finite


def shape_response(model, outputs, batch) -> dict:
    # Models predict log1p(count); counts are never negative.
    counts = np.clip(np.expm1(np.asarray(outputs[0]).reshape(-1)), 0.0, None)
    return {"predictions": [round(c, 1) for c in finite(counts)]}


service = Service("regress", shape_response)


@functions_framework.http
def regress(request):
    return service.handle(request)
