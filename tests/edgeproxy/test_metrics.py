"""Prometheus /metrics: a streaming camera's real fps, host and operation gauges, and request
metrics by route template summed over every gunicorn worker."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import wait_until


def scrape(system, **kwargs) -> dict[str, list]:
    response = system.get("/metrics", **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = family.samples
    return families


def value(families, name: str, **labels) -> float | None:
    for samples in families.values():
        for sample in samples:
            if sample.name in (name, name + "_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_metrics_show_a_streaming_cameras_fps(system, rtsp_camera):
    assert rtsp_camera.fps == 25
    created = system.post("/api/v1/process?wait=30", {"name": "metrics-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert created.status_code == 200, created.text
    system.wait_camera("metrics-cam", lambda c: (c["stream"] or {}).get("state") == "streaming"
                       and (c["stream"].get("fps") or 0) > 20, 40, message="streaming at ~25 fps")

    def fps_scraped():
        families = scrape(system)
        fps = value(families, "edgeproxy_camera_fps", camera="metrics-cam", host="edge-a")
        return fps and fps > 20 and families

    families = wait_until(fps_scraped, 20, interval=0.5, message="fps in /metrics")
    fps = value(families, "edgeproxy_camera_fps", camera="metrics-cam", host="edge-a")
    assert abs(fps - 25) <= 5, fps  # measured by the camera process over 3 s
    assert value(families, "edgeproxy_camera_streaming", camera="metrics-cam", host="edge-a") == 1
    assert value(families, "edgeproxy_camera_status", camera="metrics-cam", host="edge-a", status="running") == 1
    assert value(families, "edgeproxy_camera_desired_running", camera="metrics-cam", host="edge-a") == 1
    assert 0 <= value(families, "edgeproxy_camera_last_frame_age_seconds", camera="metrics-cam", host="edge-a") < 5
    assert value(families, "edgeproxy_camera_packets", camera="metrics-cam", host="edge-a") > 25
    assert value(families, "edgeproxy_camera_reconnects", camera="metrics-cam", host="edge-a") == 0
    assert value(families, "edgeproxy_host_online", host="edge-a") == 1
    assert value(families, "edgeproxy_host_cameras", host="edge-a") >= 1
    assert value(families, "edgeproxy_host_last_heartbeat_age_seconds", host="edge-a") < 5
    assert value(families, "edgeproxy_operations", host="edge-a", kind="connect", state="succeeded") >= 1
    assert value(families, "edgeproxy_database_up") == 1
    assert value(families, "edgeproxy_broker_up") == 1
    assert value(families, "edgeproxy_control_workers") >= 1
    assert 0 <= value(families, "edgeproxy_heartbeat_backlog") <= 2  # one edge host, its beats taken as they come

    stopped = system.post("/api/v1/process/metrics-cam/stop?wait=30")
    assert stopped.status_code == 200
    families = wait_until(lambda: (f := scrape(system)) and value(
        f, "edgeproxy_camera_status", camera="metrics-cam", host="edge-a", status="stopped") == 1 and f, 15,
        interval=0.5, message="stopped camera in /metrics")
    assert value(families, "edgeproxy_camera_streaming", camera="metrics-cam", host="edge-a") == 0
    assert value(families, "edgeproxy_camera_desired_running", camera="metrics-cam", host="edge-a") == 0
    assert system.delete("/api/v1/process/metrics-cam?wait=30").status_code == 200
    assert value(scrape(system), "edgeproxy_camera_fps", camera="metrics-cam", host="edge-a") is None


def test_request_metrics_are_counted_by_route_template_across_workers(system):
    route = "api/v1/hosts/<str:name>"
    before = value(scrape(system), "edgeproxy_http_requests", method="GET", route=route, status="404") or 0
    for i in range(30):  # spread over both gunicorn workers
        assert system.get(f"/api/v1/hosts/nobody-{i}").status_code == 404
    for _ in range(4):  # whichever worker answers the scrape sees all of them
        families = scrape(system)
        assert value(families, "edgeproxy_http_requests", method="GET", route=route, status="404") == before + 30
        assert value(families, "edgeproxy_http_request_duration_seconds_count", method="GET", route=route) >= 30
    # Raw paths never become labels: one series per route template.
    assert not [s for s in families["edgeproxy_http_requests"] if "nobody-" in s.labels["route"]]


def test_metrics_need_a_token(system):
    assert requests.get(system.base_url + "/metrics", timeout=10).status_code == 401
    viewer = {"Authorization": f"Token {system.readonly_token}"}
    assert requests.get(system.base_url + "/metrics", headers=viewer, timeout=10).status_code == 200
    assert requests.get(system.base_url + "/metrics", headers={"Authorization": "Bearer guess"},
                        timeout=10).status_code == 401
