"""The Celery application shared by the control worker and every edge worker.

Queues: ``control`` is consumed on the control plane (tasks that write the database); each edge
host consumes a queue named after the host (tasks that drive its runtime). Edge tasks never touch
the database: they report back by sending control tasks.
"""

import os

from celery import Celery

from edgeproxy import broker
from edgeproxy.contracts.tasks import CONTROL_QUEUE, host_queue

broker.install()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edgeproxy.settings")

app = Celery("edgeproxy")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["processes", "settings_app", "worker"])
app.autodiscover_tasks(["processes.events"])  # the webhook delivery task (queue "webhooks")

# Control-worker liveness for /healthz and /metrics; redaction of Celery's own log handlers.
import edgeproxy.celery_inspect  # noqa: E402 - inspect conf/report answers without passwords
import edgeproxy.liveness  # noqa: E402,F401

__all__ = ["CONTROL_QUEUE", "app", "host_queue"]  # the queue names are the contracts' (edgeproxy.contracts.tasks)
