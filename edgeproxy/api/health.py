"""``/healthz``: the database, the broker and recently seen edge workers. No authentication."""

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse


def healthz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:  # noqa: BLE001 - any failure is "down"
        checks["database"] = "down"
    try:
        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2).ping()
        checks["broker"] = "ok"
    except redis.RedisError:
        checks["broker"] = "down"
    online = 0
    if checks["database"] == "ok":
        from processes.selectors import online_hosts

        online = online_hosts().count()
    checks["edge_hosts_online"] = online
    healthy = checks["database"] == "ok" and checks["broker"] == "ok"
    return JsonResponse({"status": "ok" if healthy else "fail", "checks": checks}, status=200 if healthy else 503)
