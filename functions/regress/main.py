"""Cloud Function `regress`: the hourly bike count at a Paris counter. What the task is
and how its answers look is `velocast.core.tasks.TASKS["regress"]`."""

import functions_framework

from velocast.serving import server_errors
from velocast.serving.service import Service

service = Service("regress")
server_errors.install()


@functions_framework.http
def regress(request):
    return service.handle(request)
