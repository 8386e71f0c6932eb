"""The webhook delivery task (queue ``webhooks``, its own worker: a slow receiver never holds a
control worker). One pass per webhook at a time (a Redis lock), so its events go out in order."""

import logging

import redis
from celery import shared_task
from django.conf import settings

from processes.events import webhooks

logger = logging.getLogger("edgeproxy.events")

WEBHOOK_QUEUE = "webhooks"
DELIVER_TASK = "edgeproxy.events.deliver_webhook"
LOCK_SECONDS = 120  # longer than a pass (30 s) plus one delivery's timeouts

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5, socket_connect_timeout=5)
    return _client


@shared_task(name=DELIVER_TASK, ignore_result=True, acks_late=True)
def deliver_webhook(webhook_id: str) -> int:
    """Passes until nothing is due. A task that finds the lock taken leaves its deliveries to the
    pass under way: that one looks again after releasing the lock, so none waits for the relay."""
    sent = 0
    while True:
        lock = _redis().lock(f"edgeproxy:webhook-lock:{webhook_id}", timeout=LOCK_SECONDS, blocking=False)
        if not lock.acquire():
            return sent
        try:
            sent += webhooks.deliver(webhook_id)
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                logger.warning("webhook %s: delivery lock expired during a pass", webhook_id)
        if not webhooks.next_is_due(webhook_id):
            return sent


def request_delivery(webhook_ids) -> None:
    """Ask the webhook worker for a delivery pass of each webhook (expires: the relay asks again)."""
    for webhook_id in webhook_ids:
        deliver_webhook.apply_async((str(webhook_id),), queue=WEBHOOK_QUEUE, expires=10)
