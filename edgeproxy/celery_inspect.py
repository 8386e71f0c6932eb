"""Worker answers to ``inspect conf`` and ``inspect report`` without secrets.

Celery's own answers hide settings by name only (``*PASS*``, ``*KEY*``...), so ``REDIS_URL``,
``CELERY_BROKER_URL`` and ``EDGEPROXY_FRAMES_REDIS_URL`` went out with their passwords, and Flower
showed them on each worker's Config tab and in ``/api/workers``. These replace the two commands:
the same answers, with every password in a URL (and every other recognisable secret) masked.
"""

from __future__ import annotations

from celery.utils.serialization import jsonify, strtobool
from celery.worker import control  # registers Celery's commands first: ours replace them
from celery.worker.control import inspect_command, ok
from kombu.utils.encoding import safe_repr

from worker.redaction import redact


def _redacted(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


@inspect_command(alias="dump_conf", signature="[include_defaults=False]", args=[("with_defaults", strtobool)])
def conf(state, with_defaults=False, **kwargs):
    """List configuration (secrets masked)."""
    return _redacted(jsonify(state.app.conf.table(with_defaults=with_defaults),
                             keyfilter=control._wanted_config_key, unknown_type_filter=safe_repr))


@inspect_command()
def report(state):
    """Information about Celery installation for bug reports (secrets masked)."""
    return ok(redact(state.app.bugreport()))
