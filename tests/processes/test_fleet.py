"""A fleet of three edge workers (separate processes, one Docker engine) and the faults we can cause."""

import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.services import RedisServer, wait_until
from tests.support.system import System, fresh_database_url

pytestmark = pytest.mark.docker

HOSTS = ("fleet-1", "fleet-2", "fleet-3")


@pytest.fixture(scope="module")
def fleet(artifacts, camera_image, docker_client):
    image, volumes = camera_image
    redis_server = RedisServer(artifacts / "fleet-redis")
    system = System(artifacts / "fleet", redis_server.url, fresh_database_url("edgeproxy_it_fleet"),
                    camera_image=image, camera_volumes=volumes, heartbeat=1.0)
    system.redis_server = redis_server
    try:
        for host in HOSTS:
            system.start_edge(host)
        yield system
    finally:
        system.stop()
        redis_server.stop()
        for container in docker_client.containers.list(all=True, filters={"label": "io.edgeproxy.managed"}):
            if container.labels.get("io.edgeproxy.host", "").startswith("fleet-"):
                container.remove(force=True)


def ensure_all_online(fleet):
    for host in HOSTS:
        if host not in fleet.edges:
            fleet.start_edge(host)
        fleet.wait_host_online(host)


def connect(fleet, name, url, wait=30, **extra):
    return fleet.post(f"/api/v1/process?wait={wait}", {"name": name, "rtsp_endpoint": url, **extra})


def quiet(fleet, timeout=60):
    """Wait until no operation is pending or running anywhere."""
    def idle():
        cameras = fleet.get("/api/v1/processlist").json()
        return all(not c["operation"] or c["operation"]["state"] not in ("pending", "running") for c in cameras)
    wait_until(idle, timeout, interval=0.3, message="no active operation")


def agreement(fleet, docker_client):
    """Database and Docker agree container by container: [] when they do, else the differences."""
    cameras = {c["name"]: c for c in fleet.get("/api/v1/processlist").json()}
    containers = {}
    for container in docker_client.containers.list(all=True, filters={"label": "io.edgeproxy.managed=true"}):
        host = container.labels.get("io.edgeproxy.host", "")
        if host.startswith("fleet-"):
            containers[container.labels["io.edgeproxy.camera"]] = (host, container.status)
    problems = []
    for name, camera in cameras.items():
        if name not in containers:
            problems.append(f"{name}: no container")
            continue
        host, status = containers[name]
        if host != camera["host"]:
            problems.append(f"{name}: container on {host}, database says {camera['host']}")
        running = status in ("running", "restarting")
        if running != (camera["desired_state"] == "running"):
            problems.append(f"{name}: container {status}, desired {camera['desired_state']}")
    problems += [f"{name}: container without a camera" for name in set(containers) - set(cameras)]
    return problems


def test_placement_spreads_cameras_and_list_filters_by_host(fleet, rtsp_camera):
    ensure_all_online(fleet)
    for i in range(6):
        response = connect(fleet, f"spread-{i}", rtsp_camera.url(), wait=0)
        assert response.status_code == 202, response.text
    counts = {host: len(fleet.get(f"/api/v1/processlist?host={host}").json()) for host in HOSTS}
    assert counts == {host: 2 for host in HOSTS}
    quiet(fleet)
    for host in HOSTS:
        listed = fleet.get(f"/api/v1/processlist?host={host}").json()
        assert {c["host"] for c in listed} == {host}
    for i in range(6):
        assert fleet.delete(f"/api/v1/process/spread-{i}?wait=30").status_code == 200


def test_parallel_identical_connects_create_exactly_one(fleet, rtsp_camera):
    ensure_all_online(fleet)
    body = {"name": "race-cam", "rtsp_endpoint": rtsp_camera.url()}

    def attempt(_):
        return fleet.post("/api/v1/process", body).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(attempt, range(100)))
    assert codes.count(202) == 1, codes
    assert codes.count(409) == 99, codes
    assert [c["name"] for c in fleet.get("/api/v1/processlist").json()].count("race-cam") == 1
    quiet(fleet)
    # A second conflicting request on a busy camera is a 409 too.
    assert fleet.post("/api/v1/process/race-cam/stop").status_code == 202
    assert fleet.post("/api/v1/process/race-cam/start").status_code == 409
    quiet(fleet)
    assert fleet.delete("/api/v1/process/race-cam?wait=30").status_code == 200


def test_container_killed_by_hand_comes_back(fleet, rtsp_camera, docker_client):
    ensure_all_online(fleet)
    camera = connect(fleet, "victim-cam", rtsp_camera.url(), host="fleet-1").json()
    docker_client.containers.get(camera["container_id"]).remove(force=True)
    back = fleet.wait_camera("victim-cam", lambda c: c["status"] == "running" and c["container_id"]
                             and c["container_id"] != camera["container_id"], timeout=30, message="recreated")
    assert docker_client.containers.get(back["container_id"]).status == "running"
    assert back["operation"]["kind"] == "reconcile"


def test_stray_container_is_removed_and_unlabelled_one_is_left_alone(fleet, rtsp_camera, docker_client, camera_image):
    ensure_all_online(fleet)
    camera = connect(fleet, "stray-cam", rtsp_camera.url(), host="fleet-2").json()
    foreign = docker_client.containers.run(camera_image[0], name="not-ours-fleet", detach=True,
                                           entrypoint=["python", "-c", "import time; time.sleep(600)"],
                                           volumes=camera_image[1].split(","), network_mode="host")
    try:
        # Forget the camera behind the host's back: its container becomes a stray.
        fleet._manage("shell", "-c",
                      "from processes.models import Camera; Camera.objects.filter(name='stray-cam').delete()")

        def gone():
            try:
                docker_client.containers.get(camera["container_id"])
                return False
            except Exception:  # noqa: BLE001 - docker.errors.NotFound
                return True

        wait_until(gone, 30, interval=0.5, message="stray removed")
        foreign.reload()
        assert foreign.status == "running"
    finally:
        foreign.remove(force=True)


def test_move_camera_to_another_host(fleet, rtsp_camera, docker_client):
    ensure_all_online(fleet)
    first = connect(fleet, "mover-cam", rtsp_camera.url(), host="fleet-1").json()
    moved = fleet.request("PATCH", "/api/v1/process/mover-cam?wait=30", json={"host": "fleet-3"})
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["host"] == "fleet-3" and body["status"] == "running"
    assert body["operation"]["kind"] == "move" and body["operation"]["state"] == "succeeded"
    container = docker_client.containers.get(body["container_id"])
    assert container.labels["io.edgeproxy.host"] == "fleet-3"
    assert all(c.id != first["container_id"] for c in docker_client.containers.list(all=True))
    assert fleet.post("/api/v1/process/mover-cam/move", {"host": "fleet-3"}).status_code == 409  # already there
    assert fleet.post("/api/v1/process/mover-cam/move", {"host": "nowhere"}).status_code == 404
    back = fleet.post("/api/v1/process/mover-cam/move?wait=30", {"host": "fleet-2"})
    assert back.status_code == 200 and back.json()["host"] == "fleet-2"
    assert fleet.delete("/api/v1/process/mover-cam?wait=30").status_code == 200


def queued(broker, task_id: str, queue: str) -> bool:
    """Is the task's message still waiting in the host's queue (no worker has taken it)?"""
    return any(task_id.encode() in item for item in broker.lrange(queue, 0, -1))


def taken(broker, task_id: str) -> bool:
    """Has a worker taken the task's message and not yet acknowledged it (kombu's unacked hash;
    edge tasks acknowledge when they end)?"""
    return any(task_id.encode() in item for item in broker.hvals("unacked"))


@pytest.mark.parametrize("path", ["before-it-took-the-start", "while-starting"])
def test_worker_killed_during_a_start_finishes_it_when_back(fleet, rtsp_camera, docker_client, path):
    """Either way a worker can die with a start on its queue, the operation finishes, once, when
    it is back: each path is driven and checked, not left to timing."""
    ensure_all_online(fleet)
    name = f"interrupted-{path}"
    queue = "host.fleet-2"
    broker = fleet.redis_server.client()
    edge = fleet.edges["fleet-2"]
    try:
        if path == "before-it-took-the-start":
            edge.kill()  # dead, still online for a few beats: the start waits in its queue
            queued_reply = fleet.post("/api/v1/process", {"name": name, "rtsp_endpoint": rtsp_camera.url(),
                                                          "host": "fleet-2"})
            assert queued_reply.status_code == 202, queued_reply.text
            operation_id = queued_reply.json()["operation"]["id"]
            assert queued(broker, operation_id, queue) and not taken(broker, operation_id)
        else:
            queued_reply = fleet.post("/api/v1/process", {"name": name, "rtsp_endpoint": rtsp_camera.url(),
                                                          "host": "fleet-2"})
            assert queued_reply.status_code == 202, queued_reply.text
            operation_id = queued_reply.json()["operation"]["id"]
            # Frozen the moment it holds the message: it is in the middle of the start (a container
            # create and start take far longer than this reaction), then killed there.
            wait_until(lambda: taken(broker, operation_id), 10, interval=0.001, message="the worker takes the start")
            edge.signal(signal.SIGSTOP)
            edge.kill()
            assert not queued(broker, operation_id, queue) and taken(broker, operation_id)
        assert fleet.camera(name)["operation"]["state"] in ("pending", "running")  # not finished by the dead worker
    finally:
        fleet.edges.pop("fleet-2")
    fleet.start_edge("fleet-2")
    camera = fleet.wait_camera(name, lambda c: c["status"] == "running", timeout=30, message="running")
    assert camera["operation"]["id"] == operation_id
    assert camera["operation"]["state"] == "succeeded"
    assert docker_client.containers.get(camera["container_id"]).labels["io.edgeproxy.host"] == "fleet-2"
    ours = docker_client.containers.list(all=True, filters={"label": f"io.edgeproxy.camera={name}"})
    assert len(ours) == 1  # started once, whichever copy of the message ran
    assert fleet.delete(f"/api/v1/process/{name}?wait=30").status_code == 200


def test_redis_outage_reads_answer_writes_503_and_everything_recovers(fleet, rtsp_camera):
    ensure_all_online(fleet)
    assert connect(fleet, "outage-cam", rtsp_camera.url()).status_code == 200
    fleet.redis_server.stop()
    try:
        down_until = time.monotonic() + 10
        while time.monotonic() < down_until:
            reads = fleet.get("/api/v1/processlist")
            assert reads.status_code == 200 and "outage-cam" in reads.text
            write = fleet.post("/api/v1/process", {"name": "during-outage", "rtsp_endpoint": rtsp_camera.url()})
            assert write.status_code == 503, write.text
            assert write.json()["code"] == 503
            time.sleep(1)
        assert fleet.get("/api/v1/process/during-outage").status_code == 404
    finally:
        fleet.redis_server.start()
    for host in HOSTS:
        fleet.wait_host_online(host, timeout=30)
    after = connect(fleet, "after-outage", rtsp_camera.url())
    assert after.status_code == 200 and after.json()["status"] == "running", after.text
    assert fleet.camera("outage-cam")["desired_state"] == "running"
    for name in ("outage-cam", "after-outage"):
        assert fleet.delete(f"/api/v1/process/{name}?wait=30").status_code == 200


def test_docker_engine_restart_brings_every_camera_back(fleet, rtsp_camera, docker_client):
    ensure_all_online(fleet)
    names = [f"engine-{i}" for i in range(3)]
    for name in names:
        assert connect(fleet, name, rtsp_camera.url()).status_code == 200
    assert fleet.post("/api/v1/process/engine-2/stop?wait=30").status_code == 200
    restart_docker_engine()
    for name in names[:2]:
        fleet.wait_camera(name, lambda c: c["status"] == "running" and c["state"].get("Running"), timeout=30,
                          message="running after the engine restart")
    assert fleet.camera("engine-2")["status"] == "stopped"
    quiet(fleet)
    for name in names:
        assert fleet.delete(f"/api/v1/process/{name}?wait=30").status_code == 200


def restart_docker_engine():
    pid = int(subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=True).stdout.split()[0])
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: subprocess.run(["pidof", "dockerd"], capture_output=True).returncode != 0, 60,
               message="dockerd to stop")
    log = open("/var/log/edgeproxy-dockerd.log", "ab")  # noqa: SIM115 - dockerd's output for its whole life
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    wait_until(lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, 60,
               message="dockerd to start")


def test_soak_of_random_operations_ends_in_agreement(fleet, rtsp_camera, docker_client):
    ensure_all_online(fleet)
    rng = random.Random(5)
    names = [f"soak-{i:02d}" for i in range(12)]

    def one(step):
        name = rng.choice(names)
        action = rng.choice(("connect", "connect", "stop", "start", "delete", "move"))
        if action == "connect":
            response = fleet.post("/api/v1/process?wait=30", {"name": name, "rtsp_endpoint": rtsp_camera.url()})
        elif action == "stop":
            response = fleet.post(f"/api/v1/process/{name}/stop?wait=30")
        elif action == "start":
            response = fleet.post(f"/api/v1/process/{name}/start?wait=30")
        elif action == "delete":
            response = fleet.delete(f"/api/v1/process/{name}?wait=30")
        else:
            response = fleet.post(f"/api/v1/process/{name}/move?wait=30", {"host": rng.choice(HOSTS)})
        return action, response.status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(500)))
    codes = {code for _, code in results}
    assert codes <= {200, 400, 404, 409}, results  # never 500, never a timeout
    assert sum(1 for _, code in results if code == 200) > 100
    quiet(fleet, timeout=90)
    wait_until(lambda: not agreement(fleet, docker_client), 45, interval=1,
               message=f"database and Docker to agree: {agreement(fleet, docker_client)}")


def test_stopped_worker_turns_host_and_cameras_offline(fleet, rtsp_camera):
    ensure_all_online(fleet)
    assert connect(fleet, "orphan-cam", rtsp_camera.url(), host="fleet-3").status_code == 200
    fleet.stop_edge("fleet-3")
    started = time.monotonic()
    wait_until(lambda: not fleet.get("/api/v1/hosts/fleet-3").json()["online"], 10, interval=0.2,
               message="fleet-3 offline")
    assert time.monotonic() - started <= 3 * 1.0 + 1.5  # three heartbeat intervals (1 s here), plus polling
    assert fleet.camera("orphan-cam")["status"] == "offline"
    assert all(c["status"] == "offline" for c in fleet.get("/api/v1/processlist?host=fleet-3").json())

    for host in ("fleet-1", "fleet-2"):
        fleet.stop_edge(host)
    wait_until(lambda: not any(h["online"] for h in fleet.get("/api/v1/hosts").json()), 10, message="all offline")
    refused = fleet.post("/api/v1/process", {"name": "nowhere-cam", "rtsp_endpoint": rtsp_camera.url()})
    assert refused.status_code == 503 and refused.json()["code"] == 503
    assert fleet.get("/api/v1/process/nowhere-cam").status_code == 404
    ensure_all_online(fleet)
    fleet.wait_camera("orphan-cam", lambda c: c["status"] == "running", timeout=30, message="back online")
