"""Control tasks: consumed on the control plane from the ``control`` queue.

Edge workers send these to report; each one loads and calls a service. Names and keyword
arguments are those of the messages in ``edgeproxy.contracts.tasks``. Idempotent: a redelivered
result of a finished operation changes nothing.

No report is dropped because the database is busy or away (SQLite's write lock held too long,
PostgreSQL restarting or read-only): the task is sent again with growing delays until it is
recorded, and a message is acknowledged only once its task has run (``acks_late``).
"""

import base64
import functools
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import redis
from celery import Task, shared_task, signals
from django.db import InterfaceError, InternalError, OperationalError

from edgeproxy.contracts import tasks as messages
from processes import services

logger = logging.getLogger("edgeproxy.processes")

# What a busy, restarting or read-only database raises (not a bug: the same call succeeds later).
# PostgreSQL's "read-only transaction" and "terminating connection" are InternalError and
# OperationalError; SQLite's "database is locked" is OperationalError.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, InternalError)
# A report about an operation not committed yet is retried 0.1 s apart, for up to 10 s.
NOT_FOUND_RETRIES = 100
RETRY_MAX_SECONDS = 5.0


def retry_delay(retries: int) -> float:
    """Exponential back-off with jitter: 0.25 s, 0.5 s, 1 s ... up to 5 s (a report lands within seconds of the
    database's return)."""
    return min(RETRY_MAX_SECONDS, 0.25 * 2 ** min(retries, 8)) * random.uniform(0.5, 1.0)


class ReportTask(Task):
    """A report from an edge host, retried until the database takes it (``max_retries`` None);
    ``superseded_after`` retries, for reports a newer one replaces (heartbeats, progress)."""

    acks_late = True
    ignore_result = True
    max_retries = None
    superseded_after: int | None = None

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except services.OperationNotFound as exc:
            if self.request.retries >= NOT_FOUND_RETRIES:
                raise
            raise self.retry(exc=exc, countdown=0.1) from None
        except DATABASE_UNAVAILABLE as exc:
            retries = self.request.retries
            if self.superseded_after is not None and retries >= self.superseded_after:
                logger.warning("%s not recorded (database unavailable: %s); the next report replaces it",
                               self.name, exc)
                return None
            logger.warning("%s: database unavailable (%s); trying again (attempt %d)", self.name, exc, retries + 1)
            raise self.retry(exc=exc, countdown=retry_delay(retries)) from None


class ReplaceableReportTask(ReportTask):
    superseded_after = 3


class PeriodicTask(Task):
    """A beat task: a pass the database could not take is simply the next pass's job."""

    ignore_result = True

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except DATABASE_UNAVAILABLE as exc:
            logger.warning("%s skipped (database unavailable: %s); the next pass does it", self.name, exc)
            return None


@shared_task(name=messages.OperationStarted.task, base=ReportTask)
def operation_started(operation_id: str) -> None:
    services.record_operation_started(operation_id)


@shared_task(name=messages.OperationFinished.task, base=ReportTask)
def operation_finished(operation_id: str, ok: bool, error: str = "", observed: dict | None = None,
                       stream: dict | None = None, removed: bool = False, result: dict | None = None) -> None:
    services.record_operation_result(operation_id, ok, error, observed, stream, removed, result, with_record=True)


@shared_task(name=messages.HostHeartbeat.task, base=ReplaceableReportTask)
def host_heartbeat(host: str, report: dict) -> None:
    services.absorb_heartbeat(host, report)


# --- heartbeats, read in batches -----------------------------------------------------------------

HEARTBEAT_BATCH = 500
HEARTBEAT_THREADS = 4  # (as the control worker's Celery threads)
# One batch at most this often: a control worker keeping up with 1,000 hosts read them a beat or
# two at a time, two broker round trips each. A beat waits at most this long (a quiet one waits
# EDGEPROXY_HEARTBEAT_BATCH_SECONDS anyway); at most HEARTBEAT_BATCH / HEARTBEAT_LINGER_SECONDS a second.
HEARTBEAT_LINGER_SECONDS = 0.1


def absorb_heartbeat_messages(raw_messages: list[bytes]) -> int:
    """Heartbeat task messages as kombu stored them on the heartbeat queue, applied
    (``services.absorb_heartbeat``): the newest of each host only (it replaces the older ones), the
    hosts side by side (a beat recorded in full waits on the database). A message that is not a
    heartbeat, or that fails, is logged and dropped: the host's next beat replaces it. The number applied."""
    newest: dict[str, dict] = {}
    for raw in raw_messages:
        try:
            envelope = orjson.loads(raw)
            if envelope.get("headers", {}).get("task") != messages.HostHeartbeat.task:
                raise ValueError(f"not a heartbeat: {envelope.get('headers', {}).get('task')!r}")
            body = envelope["body"]
            if envelope.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            _args, kwargs, _embed = orjson.loads(body)
            newest[kwargs["host"]] = kwargs["report"]
        except Exception as exc:  # noqa: BLE001 - one bad beat must not stop the others
            logger.warning("heartbeat not recorded (%s); the host's next one replaces it", exc)
    try:
        loud = services.gather_quiet_heartbeats(newest)  # (the quiet ones need no thread of their own)
    except Exception as exc:  # noqa: BLE001 - the hosts' next beats replace them
        logger.warning("heartbeats not recorded (%s); the hosts' next ones replace them", exc)
        return 0
    return len(newest) - len(loud) + sum(_heartbeat_pool().map(_record_one, loud.items()))


def _record_one(beat: tuple[str, tuple[dict, tuple]]) -> bool:
    from django.db import close_old_connections

    host, (report, observation) = beat
    try:
        close_old_connections()
        services.record_heartbeat(host, report, observation)
        return True
    except Exception as exc:  # noqa: BLE001 - the host's next beat replaces it
        logger.warning("heartbeat of %s not recorded (%s); its next one replaces it", host, exc)
        return False


@functools.cache
def _heartbeat_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(HEARTBEAT_THREADS, thread_name_prefix="heartbeat")


def consume_heartbeats(client: redis.Redis, wait: float = 1.0) -> int:
    """One batch from the heartbeat queue: wait up to ``wait`` s for a beat, take up to
    HEARTBEAT_BATCH in one more round trip, apply them. Taken off the queue unacknowledged: a beat
    lost with a crashing worker is replaced by its host's next one."""
    first = client.brpop([messages.HEARTBEAT_QUEUE], timeout=wait)
    if first is None:
        return 0
    rest = client.rpop(messages.HEARTBEAT_QUEUE, HEARTBEAT_BATCH - 1) or []  # kombu pushes on the left
    return absorb_heartbeat_messages([first[1], *rest])


def _consume_heartbeats_forever() -> None:
    from django.db import close_old_connections

    from edgeproxy.celery import app

    client = None
    while True:
        try:
            client = client or redis.Redis.from_url(app.conf.broker_url, socket_timeout=30, socket_connect_timeout=5)
            close_old_connections()
            started = time.monotonic()
            consume_heartbeats(client)
            time.sleep(max(0.0, HEARTBEAT_LINGER_SECONDS - (time.monotonic() - started)))
        except redis.RedisError as exc:
            logger.warning("heartbeat queue not readable (%s); trying again", exc)
            client = None
            time.sleep(1.0)


@signals.worker_ready.connect
def _start_heartbeat_consumer(sender, **_kwargs) -> None:
    """A worker consuming the control queue also reads the heartbeat queue, in batches: one Celery
    task a beat (its message bookkeeping, three broker round trips) was most of the control
    worker's CPU with a thousand hosts."""
    if messages.CONTROL_QUEUE in sender.app.amqp.queues.consume_from:
        threading.Thread(target=_consume_heartbeats_forever, name="heartbeats", daemon=True).start()


@shared_task(name=messages.HostAlive.task, base=ReplaceableReportTask)
def host_alive(host: str) -> None:
    services.record_host_alive(host)


@shared_task(name=messages.HostStarted.task, base=ReportTask)
def host_started(host: str, report: dict) -> None:
    edge_host = services.record_heartbeat(host, report)
    services.host_restarted(edge_host)


@shared_task(name=messages.OperationProgress.task, base=ReplaceableReportTask)
def operation_progress(operation_id: str, progress: dict) -> None:
    services.record_operation_progress(operation_id, progress)


@shared_task(name=messages.RecordAnnotation.task, base=ReportTask)
def record_annotation(host: str = "", **fields) -> None:
    services.record_annotation(fields, host)


@shared_task(name=messages.ReconcileFleet.task, base=PeriodicTask)
def reconcile_fleet() -> None:
    services.reconcile_fleet()


@shared_task(name=messages.ExpireOperations.task, base=PeriodicTask)
def expire_operations() -> None:
    services.expire_operations()


@shared_task(name=messages.PullFinished.task, base=ReportTask)
def pull_finished(operation_id: str, ok: bool, error: str = "", result: dict | None = None,
                  progress: dict | None = None, images: list | None = None) -> None:
    services.record_pull_result(operation_id, ok, error, result, progress, images)


@shared_task(name=messages.UpgradeFinished.task, base=ReportTask)
def upgrade_finished(operation_id: str, ok: bool, error: str = "", observed: dict | None = None,
                     stream: dict | None = None, result: dict | None = None, progress: dict | None = None) -> None:
    services.record_upgrade_result(operation_id, ok, error, observed, stream, result, progress)
