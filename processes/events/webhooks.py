"""Webhooks: their records, the outbound safety rule, and the delivery of events to them.

Deliveries are made from the outbox (``fan_out``) and sent, for one webhook at a time, in event
order (``deliver``, run by the Celery task ``processes.events.tasks.deliver_webhook``): the first
that fails stops the others (so each camera's events arrive in order) and is tried again after a
growing delay. A receiver away for a while gets everything on its return, up to
EDGEPROXY_EVENTS_RETENTION_HOURS (docs/events.md).

Outbound safety: a webhook's host is resolved when deliveries are sent (once per sending pass, at
most 30 s, which keeps its connection alive) and every address it gives
must be allowed (no loopback, link-local, private or otherwise special address unless listed in
EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS); the request then goes to that checked address (no second
lookup a DNS answer could change), with short timeouts and no redirects followed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import socket
import time
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from edgeproxy import crypto
from edgeproxy.contracts import events as contract
from edgeproxy.contracts.errors import Invalid, NotFound
from processes.models import Delivery, Event, Webhook

logger = logging.getLogger("edgeproxy.events")

URL_MAX = 2048
SECRET_MIN, SECRET_MAX = 16, 256
# Printable ASCII: the secret is typed into receivers' configuration, and signs bytes as UTF-8 alike.
SECRET_RULE = re.compile(rf"[ -~]{{{SECRET_MIN},{SECRET_MAX}}}")
DELIVERIES_PER_PASS = 500


# --- outbound safety ----------------------------------------------------------------------------


class RefusedAddress(Exception):
    """The webhook's host is, or resolves to, an address outbound requests may not go to."""


def _allowed_networks() -> list:
    return [ipaddress.ip_network(n, strict=False) for n in settings.EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS]


def address_allowed(address: str) -> bool:
    """Public (globally routable) addresses, and those in EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in network for network in _allowed_networks()):
        return True
    return ip.is_global and not ip.is_multicast


def resolve_allowed(host: str, port: int) -> str:
    """The address to connect to for ``host``: every address it resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    refused = [a for a in addresses if not address_allowed(a)]
    if refused or not addresses:
        raise RefusedAddress(f"{host} resolves to a refused address ({', '.join(refused)}); "
                             "see EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS")
    return addresses[0]


# --- records ---------------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """The URL, or Invalid naming the field ``url``: http(s), not too long, no credentials, and an
    address literal must be allowed (host names are checked at each delivery, on what they resolve to)."""
    def refuse(message: str):
        return Invalid(f"url: {message}", field="url")

    if not isinstance(url, str) or not url:
        raise refuse("is required.")
    if len(url) > URL_MAX:
        raise refuse(f"must be at most {URL_MAX} characters.")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise refuse("must not contain white space or control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise refuse("must be a valid http:// or https:// URL.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise refuse("must start with http:// or https://.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise refuse("must not contain credentials (user:password@); the secret signs deliveries instead.")
    if not parts.hostname:
        raise refuse("must name a host.")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and not address_allowed(str(literal)):
        raise refuse(f"{parts.hostname} is in a refused network (loopback, link-local, private or special); "
                     "allow it with EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS.")
    return parts.scheme.lower() + url[len(parts.scheme):]


def check_event_types(types) -> list[str]:
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise Invalid("event_types: must be a list of event types.", field="event_types")
    unknown = sorted(set(types) - set(contract.EVENT_TYPES))
    if unknown:
        raise Invalid(f"event_types: unknown event type(s) {', '.join(unknown)}; known: "
                      f"{', '.join(contract.EVENT_TYPES)}.", field="event_types",
                      extra={"known_event_types": list(contract.EVENT_TYPES)})
    return list(dict.fromkeys(types))


def check_secret(secret) -> str:
    if not isinstance(secret, str) or not SECRET_RULE.fullmatch(secret):
        raise Invalid(f"secret: must be {SECRET_MIN} to {SECRET_MAX} printable ASCII characters.", field="secret")
    return secret


def create_webhook(*, url: str, event_types: list[str] | None = None, secret: str | None = None,
                   description: str = "", enabled: bool = True) -> tuple[Webhook, str]:
    """A new webhook, and its secret (generated when not given): the only time the secret is shown."""
    secret = check_secret(secret) if secret is not None else secrets.token_urlsafe(32)
    webhook = Webhook.objects.create(url=check_url(url), event_types=check_event_types(event_types or []),
                                     secret_encrypted=crypto.encrypt(secret), description=description,
                                     enabled=enabled)
    logger.info("webhook %s created", webhook.id)
    return webhook, secret


def update_webhook(webhook_id, **fields) -> Webhook:
    with transaction.atomic():
        webhook = Webhook.objects.select_for_update().filter(id=webhook_id).first()
        if webhook is None:
            raise NotFound(f"No webhook {webhook_id}.")
        if fields.get("url") is not None:
            webhook.url = check_url(fields["url"])
        if fields.get("event_types") is not None:
            webhook.event_types = check_event_types(fields["event_types"])
        if fields.get("secret") is not None:
            webhook.secret_encrypted = crypto.encrypt(check_secret(fields["secret"]))
        if fields.get("description") is not None:
            webhook.description = fields["description"]
        if fields.get("enabled") is not None:
            webhook.enabled = fields["enabled"]
        webhook.save()
    return webhook


def delete_webhook(webhook_id) -> None:
    if not Webhook.objects.filter(id=webhook_id).delete()[0]:
        raise NotFound(f"No webhook {webhook_id}.")


# --- fan-out and delivery -----------------------------------------------------------------------


def fan_out(limit: int = 1000) -> set:
    """Deliveries for events not fanned out yet, one per enabled webhook that wants the type.
    Returns the ids of the webhooks that got new deliveries."""
    with transaction.atomic():
        pending = list(Event.objects.select_for_update(skip_locked=True).filter(fanned_out=False)
                       .order_by("id")[:limit])
        if not pending:
            return set()
        hooks = list(Webhook.objects.filter(enabled=True).values_list("id", "event_types"))
        rows = [Delivery(webhook_id=hook_id, event=event) for event in pending
                for hook_id, types in hooks if not types or event.type in types]
        Delivery.objects.bulk_create(rows, ignore_conflicts=True)
        Event.objects.filter(id__in=[e.id for e in pending]).update(fanned_out=True)
    return {row.webhook_id for row in rows}


def due_webhooks() -> list:
    """Webhooks with a pending delivery due now (the relay's safety net: nothing waits on a lost task)."""
    now = timezone.now()
    return list(Delivery.objects.filter(state=Delivery.PENDING, webhook__enabled=True)
                .exclude(next_attempt__gt=now).values_list("webhook_id", flat=True).distinct())


def next_is_due(webhook_id) -> bool:
    """Whether the webhook's first pending delivery (in event order) may be sent now."""
    first = (Delivery.objects.filter(webhook_id=webhook_id, webhook__enabled=True, state=Delivery.PENDING)
             .order_by("event_id").values_list("next_attempt", flat=True)[:1])
    return any(at is None or at <= timezone.now() for at in first)


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: doubling from
    EDGEPROXY_WEBHOOK_RETRY_SECONDS up to EDGEPROXY_WEBHOOK_RETRY_MAX_SECONDS."""
    return min(settings.EDGEPROXY_WEBHOOK_RETRY_MAX_SECONDS,
               settings.EDGEPROXY_WEBHOOK_RETRY_SECONDS * 2 ** min(max(attempts - 1, 0), 20))


def body_of(event: Event) -> bytes:
    payload = contract.Event(event.type, event.time, event.data, event.camera, event.host).payload(event.id)
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _post(url: str, body: bytes, headers: dict, pools: dict) -> int:
    """POST ``body`` to ``url`` at its checked address; the status code. No redirect is followed.
    ``pools``: the pass's connections (kept alive), by scheme, host and port, each made to the
    address checked when it was made."""
    import urllib3

    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname or ""
    key = (parts.scheme, host, port)
    pool = pools.get(key)
    if pool is None:
        address = resolve_allowed(host, port)
        timeout = urllib3.Timeout(connect=min(3.0, settings.EDGEPROXY_WEBHOOK_TIMEOUT_SECONDS),
                                  read=settings.EDGEPROXY_WEBHOOK_TIMEOUT_SECONDS)
        if https:
            pool = urllib3.HTTPSConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1,
                                               server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED")
        else:
            pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
        pools[key] = pool
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    response = pool.urlopen("POST", path, body=body, headers={**headers, "Host": netloc}, redirect=False,
                            retries=False, preload_content=True)
    return response.status


def _attempt(webhook: Webhook, secret: str, delivery: Delivery, pools: dict) -> tuple[bool, int | None, str]:
    body = body_of(delivery.event)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "edgeproxy-webhooks/1",
        contract.EVENT_HEADER: delivery.event.type,
        contract.DELIVERY_HEADER: str(delivery.event_id),
        contract.TIMESTAMP_HEADER: str(timestamp),
        contract.SIGNATURE_HEADER: contract.signature(secret, timestamp, body),
    }
    try:
        status = _post(webhook.url, body, headers, pools)
    except RefusedAddress as exc:
        return False, None, str(exc)
    except Exception as exc:  # noqa: BLE001 - any network failure is a failed attempt, tried again
        return False, None, f"{type(exc).__name__}: {exc}"[:300]
    if 200 <= status < 300:
        return True, status, ""
    return False, status, f"HTTP {status}"


def _mark_delivered(done: list[tuple[int, int]]) -> None:
    """Delivered, in one write per status code (a commit per delivery would bound the rate)."""
    now = timezone.now()
    for status in {status for _, status in done}:
        ids = [delivery_id for delivery_id, code in done if code == status]
        Delivery.objects.filter(id__in=ids).update(state=Delivery.DELIVERED, delivered=now, next_attempt=None,
                                                   attempts=F("attempts") + 1, last_status_code=status)
    done.clear()


def deliver(webhook_id, deadline_seconds: float = 30.0) -> int:
    """Send the webhook's pending deliveries in event order, until one fails, none is due, or the
    pass has run ``deadline_seconds``. The caller holds the webhook's lock. Returns the number sent.
    Successes are recorded a batch at a time: a crash in between sends them again (at least once)."""
    webhook = Webhook.objects.filter(id=webhook_id, enabled=True).first()
    if webhook is None:
        return 0
    secret = crypto.decrypt(webhook.secret_encrypted)
    sent = 0
    done: list[tuple[int, int]] = []
    pools: dict = {}  # the pass's connections: the address is checked once per pass (at most 30 s)
    started = time.monotonic()
    try:
        while time.monotonic() - started < deadline_seconds:
            batch = list(Delivery.objects.select_related("event").filter(webhook=webhook, state=Delivery.PENDING)
                         .exclude(id__in=[d for d, _ in done]).order_by("event_id")[:DELIVERIES_PER_PASS])
            if not batch:
                return sent
            for delivery in batch:
                if delivery.next_attempt and delivery.next_attempt > timezone.now():
                    return sent  # the first in order is not due: nothing after it may go first
                ok, status, error = _attempt(webhook, secret, delivery, pools)
                if ok:
                    done.append((delivery.id, status or 200))
                    sent += 1
                    if len(done) >= 100:
                        _mark_delivered(done)
                    continue
                _mark_delivered(done)
                delivery.attempts += 1
                delivery.last_status_code = status
                delivery.last_error = error
                delivery.next_attempt = timezone.now() + timedelta(seconds=retry_delay(delivery.attempts))
                delivery.save(update_fields=["attempts", "last_status_code", "last_error", "next_attempt"])
                if delivery.attempts == 1 or delivery.attempts % 10 == 0:  # not once per retry of a long outage
                    logger.warning("webhook %s: delivery of event %s failed (attempt %d): %s", webhook.id,
                                   delivery.event_id, delivery.attempts, error)
                return sent
        return sent
    finally:
        _mark_delivered(done)
        for pool in pools.values():
            pool.close()


def expire_old(now=None) -> int:
    """Forget events (and their deliveries) older than EDGEPROXY_EVENTS_RETENTION_HOURS."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.EDGEPROXY_EVENTS_RETENTION_HOURS)
    old = Event.objects.filter(time__lt=cutoff)
    expired = Delivery.objects.filter(event__in=old, state=Delivery.PENDING).count()
    if expired:
        logger.warning("%d webhook deliveries expired undelivered (older than %s h)", expired,
                       settings.EDGEPROXY_EVENTS_RETENTION_HOURS)
    old.delete()
    return expired
