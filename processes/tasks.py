"""Control tasks: consumed on the control plane from the ``control`` queue.

Edge workers send these to report; each one loads and calls a service. Idempotent: a redelivered
result of a finished operation changes nothing.
"""

from celery import shared_task
from django.conf import settings

from processes import services

# Reports about an operation not committed yet are retried: 0.1 s apart, for up to 10 s.
REPORT = {"acks_late": True, "ignore_result": True, "autoretry_for": (services.OperationNotFound,),
          "retry_kwargs": {"max_retries": 100, "countdown": 0.1}}


@shared_task(name="processes.operation_started", **REPORT)
def operation_started(operation_id: str) -> None:
    services.record_operation_started(operation_id)


@shared_task(name="processes.operation_finished", **REPORT)
def operation_finished(operation_id: str, ok: bool, error: str = "", observed: dict | None = None,
                       stream: dict | None = None, removed: bool = False, result: dict | None = None) -> None:
    services.record_operation_result(operation_id, ok, error, observed, stream, removed, result)


@shared_task(name="processes.host_heartbeat", acks_late=True, ignore_result=True)
def host_heartbeat(host: str, report: dict) -> None:
    services.record_heartbeat(host, report)


@shared_task(name="processes.host_started", acks_late=True, ignore_result=True)
def host_started(host: str, report: dict) -> None:
    edge_host = services.record_heartbeat(host, report)
    services.host_restarted(edge_host)


@shared_task(name="processes.operation_progress", acks_late=True, ignore_result=True)
def operation_progress(operation_id: str, progress: dict) -> None:
    services.record_operation_progress(operation_id, progress)


@shared_task(name="processes.record_annotation", acks_late=True, ignore_result=True)
def record_annotation(host: str = "", **fields) -> None:
    services.record_annotation(fields, host)


@shared_task(name="processes.reconcile_fleet", ignore_result=True)
def reconcile_fleet() -> None:
    services.reconcile_fleet()


@shared_task(name="processes.expire_operations", ignore_result=True)
def expire_operations() -> None:
    services.expire_operations(settings.EDGEPROXY_OPERATION_TIMEOUT_SECONDS)


@shared_task(name="processes.pull_finished", **REPORT)
def pull_finished(operation_id: str, ok: bool, error: str = "", result: dict | None = None,
                  progress: dict | None = None, images: list | None = None) -> None:
    services.record_pull_result(operation_id, ok, error, result, progress, images)


@shared_task(name="processes.upgrade_finished", **REPORT)
def upgrade_finished(operation_id: str, ok: bool, error: str = "", observed: dict | None = None,
                     stream: dict | None = None, result: dict | None = None, progress: dict | None = None) -> None:
    services.record_upgrade_result(operation_id, ok, error, observed, stream, result, progress)
