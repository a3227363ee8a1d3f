"""Cloud Function `classify`: will a Paris bike counter be busy ("affluence": above
its usual level) at a given hour?"""

import functions_framework
import numpy as np

from velocast.service import Service, finite

LABELS = ("faible", "forte")


def shape_response(model, outputs, batch) -> dict:
    # zipmap disabled at export: outputs are (label, probabilities[:, 2]).
    probability_busy = np.asarray(outputs[1])[:, 1]
    predictions = (probability_busy >= 0.5).astype(int).tolist()
    return {"predictions": predictions,
            "label": [LABELS[p] for p in predictions],
            "probabilities": [round(p, 4) for p in finite(probability_busy)]}


service = Service("classify", shape_response)


@functions_framework.http
def classify(request):
    return service.handle(request)
