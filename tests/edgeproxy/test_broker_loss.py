"""The control and edge workers survive the broker vanishing while a message is unacknowledged
(edgeproxy.broker): the channel closes without raising, and the message is still in Redis for
redelivery instead of being lost."""

from __future__ import annotations

from kombu import Connection, Exchange, Queue

import edgeproxy.celery  # noqa: F401  (installs the guard, as every worker does)
from tests.support.services import RedisServer


def test_closing_a_torn_down_channel_keeps_unacked_messages(artifacts):
    server = RedisServer(artifacts / "broker-loss-redis")
    try:
        queue = Queue("guard-test", Exchange("guard-test"), routing_key="guard-test")
        with Connection(server.url) as conn:
            producer = conn.Producer()
            producer.publish({"report": 1}, exchange=queue.exchange, routing_key="guard-test", declare=[queue])
            channel = conn.channel()
            message = queue(channel).get(no_ack=False)
            assert message is not None and message.payload == {"report": 1}
            # What the other thread's teardown leaves behind in the race: a transport with no client.
            channel.connection.client = None
            channel.close()  # raised AttributeError before the guard, and Celery stopped the worker
        unacked = server.client().hlen("unacked")
        assert unacked == 1, "the unacknowledged message must stay in the broker for redelivery"
    finally:
        server.stop()


def test_a_task_finishing_after_a_reconnect_is_acknowledged_not_fatal(artifacts, settings):
    """A thread-pool task outlives the channel it came on (the consumer reconnected meanwhile) and
    is acknowledged on it: this raised ``AttributeError`` and Celery stopped the control worker
    for good (seen in CI). The acknowledgement must reach the broker instead."""
    server = RedisServer(artifacts / "broker-ack-redis")
    settings.CELERY_BROKER_URL = server.url
    try:
        queue = Queue("ack-test", Exchange("ack-test"), routing_key="ack-test")
        with Connection(server.url) as conn:
            conn.Producer().publish({"report": 2}, exchange=queue.exchange, routing_key="ack-test", declare=[queue])
            channel = conn.channel()
            message = queue(channel).get(no_ack=False)
            assert message is not None and server.client().hlen("unacked") == 1
            channel.connection.client = None
            channel.close()  # the consumer's reconnect closes the old channel under the running task
            assert channel.connection is None
            message.ack()
        assert server.client().hlen("unacked") == 0, "the acknowledgement must reach the broker"
        assert server.client().zcard("unacked_index") == 0
    finally:
        server.stop()
