"""``/healthz``: can this control plane do its job? No authentication (probes and load balancers).

Answers ``503`` when the database or the broker does not answer (nothing can be changed), else
``200`` with ``status`` ``ok`` or ``degraded``: degraded when no control worker was seen recently
(operations would stay pending), no edge host is online (nothing to run cameras on) or the
heartbeats waiting for a control worker are far behind (``liveness.heartbeats_far_behind``). The
body says which, and never anything secret::

    {"status": "ok", "checks": {"database": "ok", "broker": "ok", "control_workers": 1,
                                "heartbeat_backlog": 0, "edge_hosts": 2, "edge_hosts_online": 2}}
"""

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from edgeproxy import liveness


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
    workers = liveness.control_workers_seen() if checks["broker"] == "ok" else None
    checks["control_workers"] = len(workers or [])
    checks["heartbeat_backlog"] = (liveness.heartbeat_backlog() if checks["broker"] == "ok" else None) or 0
    hosts = online = 0
    if checks["database"] == "ok":
        from processes.models import EdgeHost

        try:
            cutoff = EdgeHost.online_cutoff()
            hosts = EdgeHost.objects.count()
            online = EdgeHost.objects.filter(last_heartbeat__gte=cutoff).count()
        except Exception:  # noqa: BLE001 - e.g. tables missing before the first migrate
            checks["database"] = "down"
    checks["edge_hosts"] = hosts
    checks["edge_hosts_online"] = online
    if checks["database"] != "ok" or checks["broker"] != "ok":
        status, code = "fail", 503
    elif not checks["control_workers"] or not online or liveness.heartbeats_far_behind(checks["heartbeat_backlog"],
                                                                                        hosts):
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return JsonResponse({"status": status, "checks": checks}, status=code)
