"""Cloud Function `classify`: will a Paris bike counter be busy ("affluence": above
its usual level) at a given hour? What the task is and how its answers look is
`velocast.core.tasks.TASKS["classify"]`."""

import functions_framework

from velocast.serving import server_errors
from velocast.serving.service import Service

service = Service("classify")
server_errors.install()


@functions_framework.http
def classify(request):
    return service.handle(request)
