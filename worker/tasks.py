"""Edge tasks: consumed from this host's queue, thin wrappers around the edge agent.

They carry ids and a spec sealed to this host, never an RTSP URL or a secret (Flower shows task
arguments); names and keyword arguments are those of the messages in ``edgeproxy.contracts.tasks``.
All are idempotent, so a redelivery after a lost worker is harmless.
"""

from celery import shared_task

from edgeproxy.contracts import tasks as messages
from worker import apps, edge


@shared_task(name=messages.EnsureRunning.task, acks_late=True, ignore_result=True)
def ensure_running(operation_id: str, camera_name: str, spec: str) -> None:
    edge.current().ensure_running(operation_id, camera_name, spec)


@shared_task(name=messages.Stop.task, acks_late=True, ignore_result=True)
def stop(operation_id: str, camera_name: str) -> None:
    edge.current().stop(operation_id, camera_name)


@shared_task(name=messages.Remove.task, acks_late=True, ignore_result=True)
def remove(operation_id: str, camera_name: str) -> None:
    edge.current().remove(operation_id, camera_name)


@shared_task(name=messages.PullImage.task, acks_late=True, ignore_result=True)
def pull_image(operation_id: str, repository: str, tag: str) -> None:
    edge.current().pull_image(operation_id, repository, tag)


@shared_task(name=messages.Upgrade.task, acks_late=True, ignore_result=True)
def upgrade(operation_id: str, camera_name: str, spec: str) -> None:
    from worker import upgrade as upgrades

    upgrades.upgrade(edge.current(), operation_id, camera_name, spec)


@shared_task(name=messages.SetRecording.task, acks_late=True, ignore_result=True)
def set_recording(operation_id: str, camera_name: str, enabled: bool, retention_hours: float) -> None:
    edge.current().set_recording(operation_id, camera_name, enabled, retention_hours)


# --- app processes (issue 16): worker/apps.py ------------------------------------------------------


@shared_task(name=messages.AppEnsureRunning.task, acks_late=True, ignore_result=True)
def app_ensure_running(operation_id: str, app_name: str, spec: str) -> None:
    apps.runner(edge.current()).ensure_running(operation_id, app_name, spec)


@shared_task(name=messages.AppStop.task, acks_late=True, ignore_result=True)
def app_stop(operation_id: str, app_name: str) -> None:
    apps.runner(edge.current()).stop(operation_id, app_name)


@shared_task(name=messages.AppRemove.task, acks_late=True, ignore_result=True)
def app_remove(operation_id: str, app_name: str) -> None:
    apps.runner(edge.current()).remove(operation_id, app_name)
