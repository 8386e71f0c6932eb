"""An RTSP password never appears in a response, a task message, a container's labels or a log."""

import json

import pytest

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
