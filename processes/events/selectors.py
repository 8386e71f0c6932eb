"""Reads of webhooks, deliveries and the outbox (API, dashboard, /metrics)."""

from django.db.models import Count, Q, Sum

from processes.models import Delivery, Event, Webhook


def webhooks():
    return Webhook.objects.order_by("created")


def webhook(webhook_id) -> Webhook | None:
    return Webhook.objects.filter(id=webhook_id).first()


def delivery_counts(webhook_id) -> dict[str, int]:
    return dict(Delivery.objects.filter(webhook_id=webhook_id).values_list("state").annotate(n=Count("id"))
                .order_by())


def deliveries(webhook_id, limit: int = 100) -> list[Delivery]:
    return list(Delivery.objects.select_related("event").filter(webhook_id=webhook_id).order_by("-event_id")[:limit])


def recent_deliveries(limit: int = 20) -> list[Delivery]:
    return list(Delivery.objects.select_related("event", "webhook").order_by("-id")[:limit])


def delivery_totals() -> dict:
    """For /metrics: deliveries by webhook and state, failed attempts by webhook (every attempt but the
    one that succeeded), and events waiting in the outbox."""
    by_state = list(Delivery.objects.values_list("webhook_id", "state").annotate(n=Count("id")).order_by())
    attempts = Delivery.objects.values_list("webhook_id").annotate(
        tries=Sum("attempts"), delivered=Count("id", filter=Q(state=Delivery.DELIVERED))).order_by()
    return {
        "by_state": [(str(w), s, n) for w, s, n in by_state],
        "failed_attempts": {str(w): int(tries or 0) - delivered for w, tries, delivered in attempts},
        "mqtt_waiting": Event.objects.filter(mqtt_sent=False).count(),
        "webhooks_waiting": Event.objects.filter(fanned_out=False).count(),
    }
