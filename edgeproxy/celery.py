"""The Celery application shared by the control worker and every edge worker.

Queues: ``control`` is consumed on the control plane (tasks that write the database); each edge
host consumes a queue named after the host (tasks that drive its runtime). Edge tasks never touch
the database: they report back by sending control tasks.
"""

import logging
import os

from celery import Celery, signals
from django.db import close_old_connections

from edgeproxy import broker
from edgeproxy.contracts.tasks import CONTROL_QUEUE, HostAlive, HostHeartbeat, host_queue

broker.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edgeproxy.settings")

app = Celery("edgeproxy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["processes", "settings_app", "worker"])
app.autodiscover_tasks(["processes.events"])  # the webhook delivery task (queue "webhooks")


@signals.task_prerun.connect
@signals.task_postrun.connect
def _database_connections_as_requests(**_kwargs) -> None:
    """Database connections live as they do in the API's requests: closed when obsolete
    (``DATABASE_CONN_MAX_AGE``) or broken, else reused. Celery's own rule closed them around every
    task (settings.CELERY_DB_REUSE_MAX turns it off): a new PostgreSQL connection, with its
    authentication, for each heartbeat was most of the control worker's CPU."""
    close_old_connections()

class _RoutineReports(logging.Filter):
    """Heartbeats are not logged as received and succeeded: a fleet of 1,000 hosts sends 200 a
    second, and two log lines each were a large part of the control worker's CPU. Failures still are."""

    TASKS = frozenset({HostHeartbeat.task, HostAlive.task})

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and isinstance(record.args, dict)
                    and record.args.get("name") in self.TASKS)


for _logger in ("celery.worker.strategy", "celery.app.trace"):
    logging.getLogger(_logger).addFilter(_RoutineReports())

# Control-worker liveness for /healthz and /metrics; redaction of Celery's own log handlers.
import edgeproxy.celery_inspect  # noqa: E402 - inspect conf/report answers without passwords
import edgeproxy.liveness  # noqa: E402,F401

__all__ = ["CONTROL_QUEUE", "app", "host_queue"]  # the queue names are the contracts' (edgeproxy.contracts.tasks)
