"""RTSP and RTMP secrets never appear in a response, a task message, a container's labels or a log."""

import io
import json
import stat
import tarfile
from pathlib import Path

import psycopg
import pytest
import requests

from tests.support.services import Process, free_port, wait_until
from tests.worker.camera.test_camera_process import _listening

pytestmark = pytest.mark.docker

PASSWORD = "S3cretPass-9x"  # the password_camera fixture's


def test_password_is_masked_everywhere(system, password_camera, docker_client, redis_server):
    url = password_camera.url()
    assert PASSWORD in url
    response = system.post("/api/v1/process?wait=30", {"name": "secret-cam", "rtsp_endpoint": url})
    assert response.status_code == 200, response.text
    assert response.json()["rtsp_endpoint"] == f"rtsp://admin:***@127.0.0.1:{password_camera.port}/test"

    bodies = [response.text]
    for path in ("/api/v1/process/secret-cam", "/api/v1/process/info/secret-cam", "/api/v1/processlist",
                 "/api/v1/processupgrades", "/api/v1/hosts", f"/api/v1/tasks/{response.json()['operation']['id']}"):
        reply = system.get(path)
        assert reply.status_code == 200
        bodies.append(reply.text)
    assert not [b for b in bodies if PASSWORD in b]

    container = docker_client.containers.get(response.json()["container_id"])
    assert PASSWORD not in json.dumps(container.attrs)  # labels, env, command: nothing
    assert PASSWORD.encode() not in container.logs(stdout=True, stderr=True)

    # Whatever is still in Redis (queues, results, frame bus keys).
    client = redis_server.client()
    for key in client.scan_iter("*"):
        kind = client.type(key).decode()
        if kind == "string":
            assert PASSWORD.encode() not in client.get(key), key
        elif kind == "list":
            assert not [m for m in client.lrange(key, 0, -1) if PASSWORD.encode() in m], key
        elif kind == "hash":
            assert not [v for v in client.hvals(key) if PASSWORD.encode() in v], key

    stopped = system.post("/api/v1/process/secret-cam/stop?wait=30")
    deleted = system.delete("/api/v1/process/secret-cam?wait=30")
    assert stopped.status_code == deleted.status_code == 200
    assert PASSWORD not in stopped.text + deleted.text
    assert PASSWORD not in system.logs()


RTMP_PASSWORD = "Rtmp-S3cret-pw"
STREAM_KEY = "sk_live_5g7h9j2k4"


def _rtmp_receiver(tmp_path, port: int) -> Process:
    """ffmpeg listening for one RTMP publisher (it asks for no credentials, and takes any key)."""
    process = Process(["ffmpeg", "-nostdin", "-loglevel", "warning", "-y", "-listen", "1", "-f", "flv", "-i",
                       f"rtmp://127.0.0.1:{port}/app/{STREAM_KEY}", "-c", "copy", "-f", "flv",
                       str(tmp_path / "received.flv")], tmp_path / "receiver.log")
    wait_until(lambda: _listening(port), 10, message="rtmp receiver listening")
    return process


def _file_in_container(container, path: str) -> tuple[int, bytes]:
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        return stat.S_IMODE(member.mode), tar.extractfile(member).read()


def test_rtmp_password_and_stream_key_are_masked_everywhere(system, rtsp_camera, docker_client, tmp_path):
    port = free_port()
    receiver = _rtmp_receiver(tmp_path, port)
    url = f"rtmp://pub:{RTMP_PASSWORD}@127.0.0.1:{port}/app/{STREAM_KEY}"
    masked = f"rtmp://pub:***@127.0.0.1:{port}/app/***"
    try:
        response = system.post("/api/v1/process?wait=30", {"name": "rtmp-secret", "rtsp_endpoint": rtsp_camera.url(),
                                                            "rtmp_endpoint": url})
        assert response.status_code == 200, response.text
        assert response.json()["rtmp_endpoint"] == masked
        # The camera got the URL (from its file) and publishes to the receiver.
        system.wait_camera("rtmp-secret", lambda c: c["rtmp_stream_status"]["streaming"], 40, message="rtmp streaming")

        bodies = [response.text]
        for token in (system.token, system.readonly_token):
            for path in ("/api/v1/process/rtmp-secret", "/api/v1/process/info/rtmp-secret", "/api/v1/processlist",
                         "/api/v1/processupgrades"):
                reply = requests.get(system.base_url + path, headers={"Authorization": f"Token {token}"}, timeout=10)
                assert reply.status_code == 200, (path, reply.text[:300])
                assert masked in reply.text, path
                bodies.append(reply.text)
        assert not [b for b in bodies if RTMP_PASSWORD in b or STREAM_KEY in b]

        container = docker_client.containers.get(system.camera("rtmp-secret")["container_id"])
        inspected = json.dumps(container.attrs)
        assert RTMP_PASSWORD not in inspected and STREAM_KEY not in inspected
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
        assert env["EDGEPROXY_RTMP_URL_FILE"] == "/run/edgeproxy/rtmp_url" and "EDGEPROXY_RTMP_URL" not in env
        assert _file_in_container(container, "/run/edgeproxy/rtmp_url") == (0o400, url.encode())
        # ... a read-only mount of the camera's folder on the host's tmpfs, not a copy in the container.
        folder = Path(system.secrets_dir) / system.camera("rtmp-secret")["host"] / "rtmp-secret"
        assert (folder / "rtmp_url").read_bytes() == url.encode()
        assert {"Source": str(folder), "Destination": "/run/edgeproxy", "RW": False}.items() <= next(
            m for m in container.attrs["Mounts"] if m["Destination"] == "/run/edgeproxy").items()
        logs = container.logs(stdout=True, stderr=True)
        assert RTMP_PASSWORD.encode() not in logs and STREAM_KEY.encode() not in logs

        with psycopg.connect(system.database_url) as conn:
            row = repr(conn.execute("SELECT * FROM processes_camera WHERE name = 'rtmp-secret'").fetchall())
        assert "rtmp-secret" in row and RTMP_PASSWORD not in row and STREAM_KEY not in row
        assert masked in row  # the masked form is stored beside the encrypted one
    finally:
        deleted = system.delete("/api/v1/process/rtmp-secret?wait=30")
        receiver.stop()
    assert deleted.status_code == 200 and not folder.exists()  # the files go with the camera
    assert RTMP_PASSWORD not in system.logs() and STREAM_KEY not in system.logs()


def test_upper_case_scheme_is_accepted_and_streams(system, rtsp_camera):
    upper = "RTSP" + rtsp_camera.url()[len("rtsp"):]
    response = system.post("/api/v1/process?wait=30", {"name": "upper-scheme", "rtsp_endpoint": upper})
    try:
        assert response.status_code == 200, response.text
        assert response.json()["rtsp_endpoint"] == rtsp_camera.url()  # stored and shown normalised
        camera = system.wait_camera("upper-scheme", lambda c: (c["stream"] or {}).get("state") == "streaming", 30,
                                    message="the camera streams")
        assert camera["status"] == "running"
    finally:
        system.delete("/api/v1/process/upper-scheme?wait=30")
