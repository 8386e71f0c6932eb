"""A second, short-lived system of its own (own Redis, own database, an edge host with the local
runtime) configured the way production is: JSON logs, CORS for one origin, a metrics bearer
token. It shows what the shared system cannot without disturbing other tests: structured logs
with camera/host/operation ids, a Celery task failure logged with its traceback yet redacted,
and /healthz answering 503 while the broker is down and recovering when it is back."""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
from pathlib import Path

import pytest
import requests
from celery import Celery

from tests.support.services import RedisServer, wait_until
from tests.support.system import System, fresh_database_url

METRICS_TOKEN = "metrics-bearer-7Hq2x"
ORIGIN = "https://ops.example.com"
SECRET = "Hardened-S3cret-55"
# Lines in the text formats of our LOGGING, Celery and gunicorn: none may appear with LOG_FORMAT=json.
TEXT_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+ (DEBUG|INFO|WARNING|ERROR)"
                           r"|\[\d{4}-\d\d-\d\d [^]]*: (INFO|WARNING|ERROR)/"
                           r"|\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[(INFO|WARNING|ERROR)\])")


FRAMES_KEY = "frames-key-Zr81"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (the frame server's TLS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgeproxy frames test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "frames.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "frames.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    return directory / "frames.pem", directory / "frames.key"


@pytest.fixture(scope="module")
def hardened(artifacts):
    server = RedisServer(artifacts / "hardened-redis")
    cert, key = self_signed(artifacts / "hardened-tls")
    system = System(artifacts / "hardened", server.url, fresh_database_url("edgeproxy_hardened"), runtime="local",
                    extra_env={"LOG_FORMAT": "json", "EDGEPROXY_CORS_ORIGINS": ORIGIN,
                               "EDGEPROXY_METRICS_TOKEN": METRICS_TOKEN,
                               # The edge frame server with an API key and TLS; the API trusts its CA.
                               "EDGEPROXY_GRPC_TOKENS": FRAMES_KEY, "EDGEPROXY_GRPC_TLS_CERT": str(cert),
                               "EDGEPROXY_GRPC_TLS_KEY": str(key), "EDGEPROXY_FRAMES_TOKEN": FRAMES_KEY,
                               "EDGEPROXY_FRAMES_TLS_CA": str(cert)})
    system.tls_cert = cert
    system.redis_server = server
    try:
        system.start_edge("test-hardened")
        yield system
    finally:
        system.stop()
        server.stop()


def json_records(text: str) -> list[dict]:
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def process_log(system, name: str) -> str:
    return next(p for p in system.processes if p.log_path.name == f"{name}.log").output()


def test_healthz_reports_control_workers_and_edge_hosts(hardened):
    def healthy():
        body = requests.get(hardened.base_url + "/healthz", timeout=5).json()
        return body["status"] == "ok" and body

    body = wait_until(healthy, 30, interval=0.3, message="healthz ok")
    backlog = body["checks"]["heartbeat_backlog"]  # (a beat may be on its way through its queue)
    assert body["checks"] == {"database": "ok", "broker": "ok", "control_workers": 1, "edge_hosts": 1,
                              "edge_hosts_online": 1, "heartbeat_backlog": backlog}
    assert 0 <= backlog <= 2


def test_cors_only_for_the_configured_origin(hardened):
    url = hardened.base_url + "/api/v1/processlist"
    preflight = requests.options(url, timeout=10, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    actual = hardened.get("/api/v1/processlist", headers={"Origin": ORIGIN})
    assert actual.status_code == 200 and actual.headers["Access-Control-Allow-Origin"] == ORIGIN
    for other in ("https://evil.example", "http://ops.example.com", "null"):
        refused = requests.options(url, timeout=10, headers={"Origin": other, "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in refused.headers, other
        listed = hardened.get("/api/v1/processlist", headers={"Origin": other})
        assert "Access-Control-Allow-Origin" not in listed.headers


def test_metrics_bearer_token(hardened):
    url = hardened.base_url + "/metrics"
    assert requests.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).status_code == 200
    assert requests.get(url, headers={"Authorization": "Bearer wrong-token"}, timeout=10).status_code == 401
    assert requests.get(url, timeout=10).status_code == 401


def test_json_logs_carry_camera_host_and_operation_ids(hardened, rtsp_camera):
    created = hardened.post("/api/v1/process?wait=30", {"name": "json-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert created.status_code == 200, created.text
    connect_op = created.json()["operation"]["id"]
    deleted = hardened.delete("/api/v1/process/json-cam?wait=30")
    assert deleted.status_code == 200, deleted.text
    delete_op = deleted.json()["operation"]["id"]

    api = json_records(process_log(hardened, "api"))
    assert {"camera": "json-cam", "host": "test-hardened", "operation": connect_op}.items() <= next(
        r for r in api if r.get("operation") == connect_op).items()
    assert any(r["logger"] == "gunicorn.access" and "/api/v1/process" in r["message"] for r in api)

    edge = json_records(process_log(hardened, "edge-test-hardened"))
    running = [r for r in edge if r.get("operation") == connect_op]
    assert running and running[0]["camera"] == "json-cam" and running[0]["host"] == "test-hardened"
    assert any(r.get("operation") == delete_op and r.get("camera") == "json-cam" for r in edge)
    control = json_records(process_log(hardened, "control"))
    assert any(r.get("operation") == delete_op and r.get("camera") == "json-cam" for r in control)

    for name in ("api", "control", "edge-test-hardened", "frames-test-hardened"):
        text = process_log(hardened, name)
        records = json_records(text)
        assert records, name
        assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records), name
        assert not [line for line in text.splitlines() if TEXT_LOG_LINE.match(line)], name


def test_frames_over_tls_with_an_api_key(hardened, rtsp_camera):
    """The edge frame server requires a key and speaks TLS; the API fetches snapshots through it."""
    from edgeproxy.client import FrameClient, NotAuthorized, ServerUnavailable

    assert hardened.post("/api/v1/process?wait=30", {"name": "tls-cam", "rtsp_endpoint": rtsp_camera.url()}
                         ).status_code == 200
    hardened.wait_camera("tls-cam", lambda c: (c["stream"] or {}).get("state") == "streaming", 30)
    frame = wait_until(lambda: (r := hardened.get("/api/v1/process/tls-cam/frame.jpg")).status_code == 200 and r,
                       20, interval=0.5, message="a JPEG through the TLS frame server")
    assert frame.headers["Content-Type"] == "image/jpeg" and frame.content[:2] == b"\xff\xd8"
    address = f"127.0.0.1:{hardened.frame_ports['test-hardened']}"
    ca = hardened.tls_cert.read_bytes()
    with FrameClient(address, tls=True, root_certificates=ca, timeout=5) as anonymous, pytest.raises(NotAuthorized):
        anonymous.list()
    with FrameClient(address, token=FRAMES_KEY, timeout=3) as plaintext, pytest.raises(ServerUnavailable):
        plaintext.list()
    with FrameClient(address, token=FRAMES_KEY, tls=True, root_certificates=ca, timeout=5) as client:
        assert "tls-cam" in [camera["name"] for camera in client.list()]
    assert hardened.delete("/api/v1/process/tls-cam?wait=30").status_code == 200
    assert FRAMES_KEY not in hardened.logs()


def test_task_failures_and_bad_requests_are_logged_redacted(hardened):
    probe = Celery("probe", broker=hardened.redis_server.url)
    probe.conf.task_serializer = "json"
    # A control task that fails on its argument: Celery logs the failure with a traceback that
    # quotes the argument. The secret must not survive into the log.
    probe.send_task("processes.operation_started", queue="control",
                    kwargs={"operation_id": f"rtsp://admin:{SECRET}@10.9.8.7/stream password={SECRET}"})
    # A request that fails validation with the edge secret in its path (django.request logs 4xx).
    bad = hardened.post(f"/api/v1/settings/overwrite/{'k' * 300}:{SECRET}")
    assert bad.status_code == 400

    def failure_logged():
        records = json_records(process_log(hardened, "control"))
        return [r for r in records if "operation_started" in r["message"] and "raised" in r["message"]]

    failures = wait_until(failure_logged, 20, interval=0.3, message="task failure in the control log")
    assert "Traceback" in failures[0]["exception"] and "ValidationError" in failures[0]["exception"]
    assert "admin:***@10.9.8.7" in failures[0]["message"] + failures[0]["exception"]
    wait_until(lambda: "settings/overwrite/***" in process_log(hardened, "api"), 10, message="the 400 logged")
    assert SECRET not in hardened.logs()


def test_healthz_is_503_while_the_broker_is_down_and_recovers(hardened):
    server = hardened.redis_server
    server.stop()
    try:
        down = wait_until(lambda: (r := requests.get(hardened.base_url + "/healthz", timeout=10)).status_code == 503
                          and r.json(), 15, interval=0.3, message="healthz 503")
        assert down["status"] == "fail" and down["checks"]["broker"] == "down"
        assert down["checks"]["database"] == "ok"
        # Reads still answer from the database; writes say the broker is unreachable.
        assert hardened.get("/api/v1/processlist").status_code == 200
        refused = hardened.post("/api/v1/process", {"name": "no-broker", "rtsp_endpoint": "rtsp://127.0.0.1/x"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == 503
    finally:
        server.start()
    wait_until(lambda: requests.get(hardened.base_url + "/healthz", timeout=10).json()["status"] == "ok", 60,
               interval=0.5, message="healthz ok again")
    assert "no-broker" not in {c["name"] for c in hardened.get("/api/v1/processlist").json()}
