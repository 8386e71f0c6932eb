"""Which control workers are alive, for ``/healthz`` and ``/metrics``; and redacted Celery logs.

A Celery worker that consumes the ``control`` queue records itself in the broker every
EDGEPROXY_HEARTBEAT_SECONDS (a sorted set: worker name -> time). A worker is "seen" when it
did so within three intervals. Edge workers are seen through their heartbeats in the database.

Celery also adds its own log handlers (the task logger, ``--logfile``); every handler any logger
has once Celery has set up logging gets the redacting filter, so task failures and tracebacks are
redacted like every other line.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from celery import signals

from edgeproxy.contracts.tasks import CONTROL_QUEUE, HEARTBEAT_QUEUE

SEEN_KEY = "edgeproxy:control-workers"
_stop = threading.Event()


def _interval() -> float:
    from django.conf import settings

    return float(settings.EDGEPROXY_HEARTBEAT_SECONDS)


def _client(timeout: float = 2.0):
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


def control_workers_seen() -> list[str] | None:
    """Names of the control workers seen recently; None when the broker does not answer."""
    import redis

    try:
        since = time.time() - 3 * _interval()
        return [name.decode() for name in _client().zrangebyscore(SEEN_KEY, since, "+inf")]
    except redis.RedisError:
        return None


def heartbeat_backlog() -> int | None:
    """Heartbeats waiting in their queue (``control.heartbeats``) for a control worker to record them;
    None when the broker does not answer."""
    import redis

    try:
        return int(_client().llen(HEARTBEAT_QUEUE))
    except redis.RedisError:
        return None


def heartbeats_far_behind(backlog: int, hosts: int) -> bool:
    """More than two beats per registered host waiting: the control workers are at least two heartbeat
    intervals behind, and hosts may show offline although they beat (``/healthz`` says degraded)."""
    return backlog > 2 * max(hosts, 1)


def _beat(hostname: str) -> None:
    import redis

    client = _client(5.0)
    log = logging.getLogger("edgeproxy.liveness")
    failing = False
    while not _stop.is_set():
        try:
            now = time.time()
            pipe = client.pipeline()
            pipe.zadd(SEEN_KEY, {hostname: now})
            pipe.zremrangebyscore(SEEN_KEY, "-inf", now - 3600)
            pipe.execute()
            if failing:
                log.info("control worker liveness recorded again")
            failing = False
        except redis.RedisError as exc:
            if not failing:  # once per outage, not once a beat
                log.warning("control worker liveness not recorded (until the broker answers): %s", exc)
            failing = True
        _stop.wait(_interval())
    with contextlib.suppress(redis.RedisError):
        client.zrem(SEEN_KEY, hostname)


@signals.worker_ready.connect
def _on_worker_ready(sender=None, **kwargs):
    app = sender.app
    queues = app.amqp.queues.consume_from
    consumes_control = (CONTROL_QUEUE in queues) if queues else app.conf.task_default_queue == CONTROL_QUEUE
    if consumes_control:
        hostname = getattr(sender, "hostname", None) or "control"
        threading.Thread(target=_beat, args=(hostname,), name="control-liveness", daemon=True).start()


@signals.worker_shutting_down.connect
def _on_worker_shutting_down(**kwargs):
    _stop.set()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _redact_celery_handlers(**kwargs):
    from django.conf import settings

    from worker.redaction import install_redaction

    install_redaction(json_format=settings.LOG_FORMAT == "json")
