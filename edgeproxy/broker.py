"""A guard around kombu's Redis transport for the moment the broker goes away.

When Redis drops while a thread-pool worker is acknowledging a task, the consumer closes its
channel and kombu tries to put the unacknowledged messages back, through a connection that the
other thread has already torn down: ``restore_unacked`` then raises ``AttributeError`` and Celery
stops the whole worker as an "unrecoverable error" (seen in the fleet's Redis-outage test; the
same race is reported upstream in several forms). Nothing is lost by not restoring there: the
messages stay in the broker's unacked index and kombu restores them once their visibility
timeout passes, and every task here is idempotent. So the worker logs it and reconnects.
"""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis

logger = logging.getLogger("edgeproxy.broker")

_restore_unacked = kombu_redis.QoS.restore_unacked


def _restore_unacked_or_leave_for_redelivery(self, client=None):
    try:
        return _restore_unacked(self, client)
    except AttributeError:
        if getattr(self.channel.connection, "client", None) is not None:
            raise  # not the torn-down connection: a real bug, let it surface
        logger.warning("broker connection closed while restoring %d unacknowledged message(s); "
                       "they are redelivered after the visibility timeout", len(self._delivered))
        self._delivered.clear()
        return None


def install() -> None:
    """Patch kombu's Redis QoS once (idempotent)."""
    if kombu_redis.QoS.restore_unacked is not _restore_unacked_or_leave_for_redelivery:
        kombu_redis.QoS.restore_unacked = _restore_unacked_or_leave_for_redelivery
