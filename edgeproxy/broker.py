"""Guards around kombu's Redis transport for the moment the broker goes away.

When Redis drops while a thread-pool worker runs a task, the consumer closes its channel and
reconnects on a new one. Two things then touch the old channel, whose connection is already gone
(``channel.connection is None``), and each raised ``AttributeError``, which Celery treats as an
"unrecoverable error": it stops the whole worker (both seen in the fleet's Redis-outage test; the
same races are reported upstream in several forms).

- Closing the channel restores the unacknowledged messages through that connection
  (``restore_unacked``). Nothing is lost by not restoring there: the messages stay in the
  broker's unacked index and kombu restores them once their visibility timeout passes, and every
  task here is idempotent. So the worker logs it and reconnects.
- A task that was running during the reconnect finishes and is acknowledged (``ack``, or
  ``reject``) on the old channel. The acknowledgement is only two deletions from the broker's
  unacked index, so it is made through a connection of its own; if the broker is away again, the
  message stays there and is redelivered after the visibility timeout.
"""

from __future__ import annotations

import logging

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

logger = logging.getLogger("edgeproxy.broker")

_restore_unacked = kombu_redis.QoS.restore_unacked
_ack = kombu_redis.QoS.ack
_reject = kombu_redis.QoS.reject


def _channel_closed(qos) -> bool:
    return getattr(qos.channel, "connection", None) is None


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


def _broker_client() -> redis.Redis:
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5, socket_connect_timeout=5)


def _ack_on_a_connection_of_its_own(qos, delivery_tag) -> None:
    try:
        client = _broker_client()
        try:
            client.pipeline().zrem(qos.unacked_index_key, delivery_tag).hdel(qos.unacked_key, delivery_tag).execute()
        finally:
            client.close()
    except redis.RedisError as exc:
        logger.warning("a task finished while the broker was away and could not be acknowledged (%s); "
                       "it is redelivered after the visibility timeout", exc)
    virtual.QoS.ack(qos, delivery_tag)  # forget it on this (closed) channel either way


def _ack_even_after_a_reconnect(self, delivery_tag):
    if not _channel_closed(self):
        return _ack(self, delivery_tag)
    _ack_on_a_connection_of_its_own(self, delivery_tag)
    return None


def _reject_even_after_a_reconnect(self, delivery_tag, requeue=False):
    if not _channel_closed(self):
        return _reject(self, delivery_tag, requeue=requeue)
    if requeue:  # left in the unacked index: the visibility timeout puts it back in its queue
        logger.warning("a task was requeued while the broker connection was closed; "
                       "it is redelivered after the visibility timeout")
        virtual.QoS.ack(self, delivery_tag)
    else:
        _ack_on_a_connection_of_its_own(self, delivery_tag)
    return None


def install() -> None:
    """Patch kombu's Redis QoS once (idempotent)."""
    if kombu_redis.QoS.restore_unacked is not _restore_unacked_or_leave_for_redelivery:
        kombu_redis.QoS.restore_unacked = _restore_unacked_or_leave_for_redelivery
        kombu_redis.QoS.ack = _ack_even_after_a_reconnect
        kombu_redis.QoS.reject = _reject_even_after_a_reconnect
