"""Prometheus ``/metrics``: request metrics of the API, and the fleet as the database knows it.

* Request metrics (``edgeproxy_http_requests_total``, ``edgeproxy_http_request_duration_seconds``)
  are counted by ``RequestMetricsMiddleware`` per method, route template (``api/v1/process/<str:name>``,
  never the raw path) and status. Under gunicorn every worker process counts its own requests;
  ``edgeproxy.gunicorn_conf`` turns on prometheus_client's multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR``) so that a scrape, whichever worker answers it, sums them all.
* Fleet metrics (cameras, hosts, operations, control workers) are read from the database and the
  broker at scrape time by ``FleetCollector``: the same answer from every process, nothing kept.

Access: an API token (``Authorization: Token <key>``, read-only is enough), an admin session, or
``Authorization: Bearer <EDGEPROXY_METRICS_TOKEN>`` when that is set; ``EDGEPROXY_METRICS_PUBLIC=true``
opens it to anyone who can reach the port.
"""

from __future__ import annotations

import hmac
import logging
import os
import time

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edgeproxy.api.errors import error_body
from edgeproxy.contracts.statuses import NOT_STREAMING_STATUSES, DesiredState, host_is_online, shown_status

logger = logging.getLogger("edgeproxy.metrics")

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

REQUESTS = Counter(
    "edgeproxy_http_requests", "HTTP requests answered by the API", ["method", "route", "status"]
)
LATENCY = Histogram(
    "edgeproxy_http_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def _route(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None and request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "static"
    if match is None:
        return "<unmatched>"  # 404s and requests refused before routing (413): one series, not one per path
    return match.route or match.view_name or "<unnamed>"


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in _METHODS else "OTHER"
        route = _route(request)
        LATENCY.labels(method, route).observe(time.perf_counter() - started)
        REQUESTS.labels(method, route, str(response.status_code)).inc()
        return response


# --- fleet metrics, computed at scrape time --------------------------------------------------


class FleetCollector:
    """Cameras, hosts and operations from the database; control workers from the broker."""

    def collect(self):
        from django.db import DatabaseError

        try:
            yield from self._fleet()
            database_up = 1
        except DatabaseError as exc:
            logger.warning("metrics: database unreachable: %s", exc)
            database_up = 0
        yield GaugeMetricFamily("edgeproxy_database_up", "1 when the database answered this scrape",
                                value=database_up)
        from edgeproxy import liveness

        workers = liveness.control_workers_seen()
        yield GaugeMetricFamily("edgeproxy_broker_up", "1 when the broker answered this scrape",
                                value=0 if workers is None else 1)
        yield GaugeMetricFamily("edgeproxy_control_workers", "control workers seen in the last heartbeats",
                                value=len(workers or []))
        backlog = liveness.heartbeat_backlog() if workers is not None else None
        if backlog is not None:
            yield GaugeMetricFamily("edgeproxy_heartbeat_backlog",
                                    "heartbeats waiting for a control worker (queue control.heartbeats)", value=backlog)

    def _fleet(self):
        from django.db.models import Count

        from processes import live as live_facts
        from processes.models import Camera, EdgeHost, Operation

        now = time.time()
        cutoff = EdgeHost.online_cutoff()
        hosts = list(EdgeHost.objects.values_list("id", "name", "last_heartbeat"))
        online = {hid: host_is_online(beat, cutoff) for hid, _, beat in hosts}
        names = {hid: name for hid, name, _ in hosts}

        host_online = GaugeMetricFamily("edgeproxy_host_online", "1 when the edge host beat recently", labels=["host"])
        host_age = GaugeMetricFamily("edgeproxy_host_last_heartbeat_age_seconds",
                                     "seconds since the edge host's last heartbeat", labels=["host"])
        host_cameras = GaugeMetricFamily("edgeproxy_host_cameras", "cameras placed on the edge host", labels=["host"])
        per_host = dict.fromkeys(names, 0)

        status = GaugeMetricFamily("edgeproxy_camera_status", "1 for the camera's current status (as the API shows it)",
                                   labels=["camera", "host", "status"])
        desired = GaugeMetricFamily("edgeproxy_camera_desired_running", "1 when the camera should run",
                                    labels=["camera", "host"])
        streaming = GaugeMetricFamily("edgeproxy_camera_streaming", "1 when the camera process receives frames",
                                      labels=["camera", "host"])
        fps = GaugeMetricFamily("edgeproxy_camera_fps", "frames received per second (3 s window)",
                                labels=["camera", "host"])
        frame_age = GaugeMetricFamily("edgeproxy_camera_last_frame_age_seconds",
                                      "seconds since the camera's newest frame (as of its host's last report)",
                                      labels=["camera", "host"])
        observed_age = GaugeMetricFamily("edgeproxy_camera_observed_age_seconds",
                                         "seconds since the edge host last reported on the camera",
                                         labels=["camera", "host"])
        counters = {
            "reconnects": CounterMetricFamily("edgeproxy_camera_reconnects", "reconnects of the camera process",
                                              labels=["camera", "host"]),
            "packets": CounterMetricFamily("edgeproxy_camera_packets", "video packets received",
                                           labels=["camera", "host"]),
            "decoded_frames": CounterMetricFamily("edgeproxy_camera_decoded_frames", "frames decoded for consumers",
                                                  labels=["camera", "host"]),
            "published_frames": CounterMetricFamily("edgeproxy_camera_frames_served",
                                                    "decoded frames published to the frame bus for AI programs",
                                                    labels=["camera", "host"]),
            "decode_errors": CounterMetricFamily("edgeproxy_camera_decode_errors", "packets that failed to decode",
                                                 labels=["camera", "host"]),
        }
        rows = Camera.objects.values_list("name", "host_id", "status", "desired_state", "stream", "observed_at",
                                          "created")
        live_streams = live_facts.read()  # the newest stream facts are in Redis (processes.live)
        for name, host_id, stored_status, desired_state, stream, observed_at, created in rows.iterator(chunk_size=2000):
            stream = live_facts.newest(stream, observed_at, created, live_streams.get(name))
            host = names.get(host_id, "")
            labels = [name, host]
            per_host[host_id] = per_host.get(host_id, 0) + 1
            shown = shown_status(stored_status, online.get(host_id, False))
            status.add_metric([name, host, shown], 1)
            desired.add_metric(labels, 1 if desired_state == DesiredState.RUNNING else 0)
            if observed_at is not None:
                observed_age.add_metric(labels, max(0.0, now - observed_at.timestamp()))
            stream = stream if isinstance(stream, dict) else {}
            live = shown not in NOT_STREAMING_STATUSES and stream.get("state") == "streaming"
            streaming.add_metric(labels, 1 if live else 0)
            if stream:
                fps.add_metric(labels, float(stream.get("fps") or 0) if live else 0.0)
                if isinstance(stream.get("last_frame_at"), int | float):
                    frame_age.add_metric(labels, max(0.0, now - stream["last_frame_at"] / 1000))
                for key, family in counters.items():
                    if isinstance(stream.get(key), int | float):
                        family.add_metric(labels, stream[key])
        for hid, name, beat in hosts:
            host_online.add_metric([name], 1 if online[hid] else 0)
            if beat is not None:
                host_age.add_metric([name], max(0.0, now - beat.timestamp()))
            host_cameras.add_metric([name], per_host.get(hid, 0))

        operations = GaugeMetricFamily("edgeproxy_operations", "operations in the database by host, kind and state",
                                       labels=["host", "kind", "state"])
        for host, kind, state, count in (
            Operation.objects.values_list("host__name", "kind", "state").annotate(n=Count("id")).order_by()
        ):
            operations.add_metric([host or "", kind, state], count)

        yield from (host_online, host_age, host_cameras, status, desired, streaming, fps, frame_age, observed_age,
                    *counters.values(), operations)
        yield from self._apps(online)

    @staticmethod
    def _apps(online: dict):
        """App processes (issue 16): their status as the API shows it, and whether they should run."""
        from edgeproxy.contracts.statuses import shown_status
        from processes.models import AppProcess

        status = GaugeMetricFamily("edgeproxy_app_status", "1 for the app process's current status (as the API "
                                   "shows it)", labels=["app", "host", "status"])
        desired = GaugeMetricFamily("edgeproxy_app_desired_running", "1 when the app process should run",
                                    labels=["app", "host"])
        for name, host_id, host, stored, wanted in AppProcess.objects.values_list(
                "name", "host_id", "host__name", "status", "desired_state"):
            status.add_metric([name, host, shown_status(stored, online.get(host_id, False))], 1)
            desired.add_metric([name, host], 1 if wanted == "running" else 0)
        yield from (status, desired)


class RecordingCollector:
    """Recording per camera (issue 15), from the cameras' last stream reports: bytes written, segments,
    retention deletions, errors, and whether it records now."""

    COUNTERS = (("bytes_written", "edgeproxy_recording_bytes", "bytes of closed segments written"),
                ("segments", "edgeproxy_recording_segments", "segments written"),
                ("retention_deleted", "edgeproxy_recording_retention_deletions",
                 "segments deleted by retention (age or quota)"),
                ("errors", "edgeproxy_recording_errors", "recording write errors"))

    def collect(self):
        from django.db import DatabaseError

        from processes.models import Camera

        families = {key: CounterMetricFamily(name, text, labels=["camera", "host"])
                    for key, name, text in self.COUNTERS}
        active = GaugeMetricFamily("edgeproxy_recording_active", "1 when the camera records now; 0 when it should "
                                   "but does not (quota, disk full)", labels=["camera", "host"])
        try:
            rows = list(Camera.objects.filter(recording__enabled=True).values_list("name", "host__name", "stream"))
        except DatabaseError:
            return
        for name, host, stream in rows:
            recording = (stream or {}).get("recording") if isinstance(stream, dict) else None
            recording = recording if isinstance(recording, dict) else {}
            active.add_metric([name, host], 1 if recording.get("state") == "recording" else 0)
            for key, family in families.items():
                value = recording.get(key, 0)
                family.add_metric([name, host], value if isinstance(value, int | float) else 0)
        yield from (*families.values(), active)


class EventsCollector:
    """Events out (docs/events.md): webhook deliveries kept (by webhook and state), failed delivery
    attempts, and events waiting in the outbox for webhooks and for MQTT."""

    def collect(self):
        from django.db import DatabaseError

        from processes.events.selectors import delivery_totals

        try:
            totals = delivery_totals()
        except DatabaseError:
            return  # edgeproxy_database_up says so
        deliveries = GaugeMetricFamily("edgeproxy_webhook_deliveries",
                                       "webhook deliveries kept (retention), by webhook and state",
                                       labels=["webhook", "state"])
        for webhook, state, count in totals["by_state"]:
            deliveries.add_metric([webhook, state], count)
        failed = GaugeMetricFamily("edgeproxy_webhook_failed_attempts",
                                   "failed delivery attempts of the deliveries kept, by webhook", labels=["webhook"])
        for webhook, count in totals["failed_attempts"].items():
            failed.add_metric([webhook], count)
        yield deliveries
        yield failed
        yield GaugeMetricFamily("edgeproxy_events_waiting", "events not yet made into webhook deliveries",
                                value=totals["webhooks_waiting"])
        yield GaugeMetricFamily("edgeproxy_mqtt_events_waiting", "events not yet published to the MQTT broker",
                                value=totals["mqtt_waiting"])


class _DefaultRegistry:
    """This process's own metrics (requests, process, GC) when not in multiprocess mode."""

    def collect(self):
        yield from REGISTRY.collect()


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_DefaultRegistry())
    registry.register(FleetCollector())
    registry.register(RecordingCollector())
    registry.register(EventsCollector())
    return registry


def _allowed(request) -> bool:
    if settings.EDGEPROXY_METRICS_PUBLIC or not settings.EDGEPROXY_AUTH:
        return True
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    expected = settings.EDGEPROXY_METRICS_TOKEN
    if scheme == "bearer" and expected and credentials:
        return hmac.compare_digest(credentials.encode(), expected.encode())
    if scheme == "token" and credentials:
        from rest_framework.exceptions import AuthenticationFailed

        from edgeproxy.api.auth import ApiTokenAuthentication

        try:
            return ApiTokenAuthentication().authenticate(request) is not None
        except AuthenticationFailed:
            return False
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


def metrics(request):
    if request.method not in ("GET", "HEAD"):
        return JsonResponse(error_body(405, f"Method {request.method} is not allowed here."), status=405)
    if not _allowed(request):
        response = JsonResponse(
            error_body(401, "Authentication required: send 'Authorization: Token <key>' "
                            "(or 'Bearer <EDGEPROXY_METRICS_TOKEN>')."), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
