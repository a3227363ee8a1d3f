"""Cloud Function `regress`: the hourly bike count at a Paris counter."""

import functions_framework
import numpy as np

from velocast.features import FEATURE_NAMES
from velocast.service import Service, finite

HOUR = FEATURE_NAMES.index("hour")


def counts(values) -> list[float]:
    return [round(c, 1) for c in finite(values)]


def shape_response(model, outputs, batch) -> dict:
    # Models predict log1p(count); counts are never negative.
    log_counts = np.asarray(outputs[0]).reshape(-1)
    response = {"predictions": counts(np.clip(np.expm1(log_counts), 0.0, None))}
    if model.interval is not None:
        lower, upper = model.interval.bounds(log_counts.astype(np.float64), batch.matrix[:, HOUR])
        response["lower"], response["upper"] = counts(lower), counts(upper)
        response["interval_level"] = model.interval.level
    return response


service = Service("regress", shape_response)


@functions_framework.http
def regress(request):
    return service.handle(request)
