"""Edge hosts on their own networks: nothing may rely on the control plane and an edge sharing loopback.

Each edge host (its worker, frame server and camera processes, local runtime) runs in a network
namespace of its own with its own address, joined to the control plane's network by a veth pair on
a bridge. The broker listens only on the bridge address, so every process (control plane too)
reaches it across the virtual network, and the control plane fetches ``frame.jpg`` from each edge's
frame server at that host's own address.
"""

from __future__ import annotations

import os
import subprocess

import cv2
import numpy as np
import pytest

from tests.support.services import RedisServer, RtspCamera, free_port
from tests.support.system import System

HOSTS = ("ns-edge-1", "ns-edge-2")
FRAMES_TOKEN = "netns-test-frames-key"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class VirtualNetwork:
    """A bridge in this namespace and one namespace per host, each on a veth pair."""

    def __init__(self, hosts: tuple[str, ...]):
        tag = os.getpid() % 10000
        subnet = 10 + os.getpid() % 200
        self.bridge = f"epbr{tag}"
        self.gateway = f"10.213.{subnet}.1"
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self._veths: list[str] = []
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for index, host in enumerate(hosts, start=1):
            namespace, outside, inside = f"ep{tag}h{index}", f"epv{tag}h{index}", f"epi{tag}h{index}"
            address = f"10.213.{subnet}.{10 + index}"
            ip("netns", "add", namespace)
            self.namespaces[host], self.addresses[host] = namespace, address
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self._veths.append(outside)
            ip("link", "set", outside, "master", self.bridge)
            ip("link", "set", outside, "up")
            ip("link", "set", inside, "netns", namespace)
            ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
            ip("-n", namespace, "link", "set", inside, "up")
            ip("-n", namespace, "link", "set", "lo", "up")
            ip("-n", namespace, "route", "add", "default", "via", self.gateway)

    def close(self) -> None:
        for namespace in self.namespaces.values():
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        for veth in self._veths:
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


@pytest.fixture(scope="module")
def network():
    net = VirtualNetwork(HOSTS)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="module")
def namespaced_fleet(artifacts, network):
    redis_server = RedisServer(artifacts / "netns-redis", address=network.gateway)
    camera = RtspCamera(artifacts / "netns-camera", address=network.gateway)
    system = None
    try:
        system = System(artifacts / "netns", redis_server.url, None, runtime="local",
                        extra_env={"EDGEPROXY_FRAMES_TOKEN": FRAMES_TOKEN})
        for host in HOSTS:
            port = system.frame_ports[host] = free_port()
            system.start_edge(host, netns=network.namespaces[host],
                              EDGEPROXY_GRPC_BIND=network.addresses[host],
                              EDGEPROXY_GRPC_TOKENS=FRAMES_TOKEN,
                              EDGEPROXY_FRAMES_ADVERTISE=f"{network.addresses[host]}:{port}")
        yield system, camera
    finally:
        if system is not None:
            system.stop()
        camera.stop()
        redis_server.stop()
    assert "Traceback" not in system.logs()


def net_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def test_each_edge_runs_on_its_own_network_and_serves_frames_at_its_address(namespaced_fleet, network):
    system, camera = namespaced_fleet
    ours = net_namespace(os.getpid())
    for host in HOSTS:
        # Really on another network: the worker and frame server are not in our namespace.
        assert net_namespace(system.edges[host].pid) != ours
        assert net_namespace(system.frame_servers[host].pid) != ours
        record = system.get(f"/api/v1/hosts/{host}").json()
        assert record["online"] is True
        assert record["frames_address"].startswith(network.addresses[host] + ":")

    for index, host in enumerate(HOSTS):
        name = f"ns-cam-{index}"
        created = system.post("/api/v1/process?wait=30", {"name": name, "rtsp_endpoint": camera.url(), "host": host})
        assert created.status_code == 200, created.text
        assert created.json()["host"] == host

        def streaming(record: dict) -> bool:
            return bool(record["stream"]) and record["stream"]["state"] == "streaming"

        system.wait_camera(name, streaming, timeout=40, message="stream streaming")
        snapshot = system.get(f"/api/v1/process/{name}/frame.jpg")
        assert snapshot.status_code == 200, snapshot.text
        assert snapshot.headers["Content-Type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (camera.height, camera.width)
        # The camera process, a child of the edge worker, lives on the edge's network too.
        pid = system.camera(name)["state"]["Pid"]
        assert net_namespace(pid) == net_namespace(system.edges[host].pid)

    for index in range(len(HOSTS)):
        assert system.delete(f"/api/v1/process/ns-cam-{index}?wait=30").status_code == 200


def test_the_frame_server_of_a_namespaced_edge_is_not_on_the_control_planes_loopback(namespaced_fleet):
    """The edge's frame server port answers at the edge's address, not at 127.0.0.1 here: what the
    control plane reached in the test above went across the virtual network."""
    import socket

    system, _ = namespaced_fleet
    for host in HOSTS:
        port = system.frame_ports[host]
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex(("127.0.0.1", port)) != 0
