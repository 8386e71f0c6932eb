"""Who may call the frame server and what Annotate accepts: loopback unless API keys are set (a
non-loopback address without keys refuses to start), the key on every RPC, annotations only for
cameras of this host, a size cap, and a rate limit per caller. Real frame servers, real Redis."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import grpc
import pytest

from tests.support.services import Process, free_port, wait_port, wait_until
from tests.worker.frames.conftest import HOST, server_env, table_entry
from worker.camera import keys
from worker.frames.proto import video_streaming_pb2 as pb
from worker.frames.proto import video_streaming_pb2_grpc as pb_grpc
from worker.frames.server import RateLimiter

KNOWN = "cam-guards-known"  # in the host camera table, no camera process needed for Annotate
CONTROL_QUEUE = "control"  # where the Annotate hand-off lands (the Celery queue on the test Redis)


def now_ms() -> int:
    return int(time.time() * 1000)


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].rpartition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


# 127.0.0.1, ::1, ::ffff:127.0.0.1
LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


class FrameServer:
    def __init__(self, workdir: Path, redis_url: str, name: str, bind: str | None = "127.0.0.1", **env):
        self.port = free_port()
        environment = server_env(redis_url, self.port, **env)
        if bind is None:
            environment.pop("EDGEPROXY_GRPC_BIND")
        else:
            environment["EDGEPROXY_GRPC_BIND"] = bind
        self.process = Process([sys.executable, "-m", "worker.frames"], workdir / f"frame-server-{name}.log",
                               env=environment)

    def __enter__(self):
        wait_port(self.port, 15)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.ImageStub(self.channel)
        return self

    def __exit__(self, *exc):
        self.channel.close()
        self.process.stop()
        assert "Traceback" not in self.process.output(), self.process.output()[-3000:]


@pytest.fixture
def control(frames_redis):
    """The Redis of the tests with the host camera table entry of KNOWN and an empty control queue."""
    client = frames_redis.client()
    client.hset(keys.host_cameras(HOST), KNOWN, table_entry("77", has_rtmp=False))
    client.delete(CONTROL_QUEUE)
    yield client
    client.delete(CONTROL_QUEUE)


def annotation(device_name: str = KNOWN, **fields) -> pb.AnnotateRequest:
    return pb.AnnotateRequest(device_name=device_name, type="entry", start_timestamp=now_ms(), **fields)


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if hasattr(result, "__iter__"):
            list(result)
    return info.value.code(), info.value.details()


def queued_annotations(client) -> list[dict]:
    import base64

    return [json.loads(base64.b64decode(json.loads(m)["body"]))[1] for m in client.lrange(CONTROL_QUEUE, 0, -1)]


# --- binding --------------------------------------------------------------------------------------


def test_without_keys_the_server_listens_on_loopback_only(workdir, frames_redis):
    with FrameServer(workdir, frames_redis.url, "default-bind", bind=None) as server:
        addresses = listening_addresses(server.port)
        assert addresses and addresses <= LOOPBACK, addresses
        assert server.stub.SystemTime(pb.SystemTimeRequest(), timeout=5).current_time > 0


def test_with_a_key_the_server_listens_on_all_addresses(workdir, frames_redis):
    with FrameServer(workdir, frames_redis.url, "keyed-bind", bind=None, EDGEPROXY_GRPC_TOKENS="k1") as server:
        addresses = listening_addresses(server.port)
        assert addresses & {"00000000", "00000000000000000000000000000000"}, addresses


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "edge-1.example"])
def test_non_loopback_bind_without_a_key_refuses_to_start(workdir, frames_redis, bind):
    port = free_port()
    env = server_env(frames_redis.url, port, EDGEPROXY_GRPC_BIND=bind)
    process = Process([sys.executable, "-m", "worker.frames"], workdir / "frame-server-refused.log", env=env)
    assert process.popen.wait(15) == 2
    output = process.output()
    process.stop()
    assert f"EDGEPROXY_GRPC_BIND={bind} is reachable from other machines but no API key is set" in output
    assert "EDGEPROXY_GRPC_TOKENS" in output
    assert not listening_addresses(port)


# --- the key on every call ------------------------------------------------------------------------


def test_every_rpc_needs_the_key_when_one_is_configured(workdir, frames_redis, control):
    service = pb.DESCRIPTOR.services_by_name["Image"]
    with FrameServer(workdir, frames_redis.url, "every-rpc", EDGEPROXY_GRPC_TOKENS="the-key") as server:
        checked = []
        for method in service.methods:
            request = getattr(pb, method.input_type.name)()
            if method.name == "Annotate":
                request = annotation()
            call = getattr(server.stub, method.name)
            for metadata in ((), (("authorization", "Token wrong"),), (("authorization", "the-key"),)):
                code, details = status_of(lambda c=call, r=request, m=metadata: c(r, metadata=m, timeout=5))
                assert code == grpc.StatusCode.UNAUTHENTICATED, (method.name, metadata, code, details)
            checked.append(method.name)
        assert len(checked) == len(service.methods) >= 8 and "Annotate" in checked
        assert control.llen(CONTROL_QUEUE) == 0  # the unauthenticated Annotate stored nothing
        reply = server.stub.Annotate(annotation(), metadata=(("authorization", "Token the-key"),), timeout=10)
        assert reply.device_name == KNOWN and control.llen(CONTROL_QUEUE) == 1


# --- what Annotate accepts ------------------------------------------------------------------------


def test_annotate_refuses_cameras_not_on_this_host(workdir, frames_redis, control):
    with FrameServer(workdir, frames_redis.url, "unknown-camera") as server:
        for name in ("cam-guards-nowhere", "../etc", "x" * 300):
            code, details = status_of(lambda n=name: server.stub.Annotate(annotation(n), timeout=10))
            assert code == grpc.StatusCode.NOT_FOUND and "not found" in details, (name, code, details)
        assert control.llen(CONTROL_QUEUE) == 0
        server.stub.Annotate(annotation(), timeout=10)
        assert [a["device_name"] for a in queued_annotations(control)] == [KNOWN]


def test_annotate_size_is_capped(workdir, frames_redis, control):
    with FrameServer(workdir, frames_redis.url, "size-cap") as server:
        # The audit's 1 MiB field, against the default cap (64 KiB).
        code, details = status_of(lambda: server.stub.Annotate(annotation(custom_meta_1="x" * 1024 * 1024),
                                                               timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and f"at most {64 * 1024} bytes" in details, details
        code, details = status_of(lambda: server.stub.Annotate(
            annotation(object_signature=[0.5] * 9000), timeout=10))  # 72 KB of doubles
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert control.llen(CONTROL_QUEUE) == 0
        server.stub.Annotate(annotation(custom_meta_1="y" * 60 * 1024), timeout=10)  # under the cap
        assert len(queued_annotations(control)[0]["custom_meta_1"]) == 60 * 1024
    with FrameServer(workdir, frames_redis.url, "size-cap-set", EDGEPROXY_FRAMES_ANNOTATION_MAX_KB="2") as server:
        code, details = status_of(lambda: server.stub.Annotate(annotation(custom_meta_1="x" * 2100), timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "at most 2048 bytes" in details, details
        server.stub.Annotate(annotation(custom_meta_1="x" * 1900), timeout=10)
        assert control.llen(CONTROL_QUEUE) == 2


def test_annotate_is_rate_limited_per_caller(workdir, frames_redis, control):
    with FrameServer(workdir, frames_redis.url, "rate", bind=None, EDGEPROXY_GRPC_TOKENS="key-a,key-b",
                     EDGEPROXY_FRAMES_ANNOTATE_RATE="2", EDGEPROXY_FRAMES_ANNOTATE_BURST="5") as server:
        as_a, as_b = (("authorization", "Token key-a"),), (("authorization", "Token key-b"),)
        results = []
        for _ in range(8):
            try:
                server.stub.Annotate(annotation(), metadata=as_a, timeout=10)
                results.append("ok")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
                assert "at most 2 per second per caller" in exc.details()
                results.append("limited")
        # The burst passes; the rest (sent well within a second) is refused. Refill: 2 per second.
        assert results[:5] == ["ok"] * 5 and results.count("limited") >= 2, results
        assert control.llen(CONTROL_QUEUE) == results.count("ok")
        # Another caller (another key) is not affected by the first one's flood.
        server.stub.Annotate(annotation(), metadata=as_b, timeout=10)

        def accepted_again():
            try:
                server.stub.Annotate(annotation(), metadata=as_a, timeout=10)
                return True
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return False

        wait_until(accepted_again, 5, interval=0.1, message="the first caller's bucket refilled")


def test_rate_limiter_refills_at_the_rate_up_to_the_burst():
    clock = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: clock[0])
    assert [limiter.allow(("a", "x")) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(("b", "x"))  # buckets are per caller
    clock[0] += 0.5  # one token back
    assert limiter.allow(("a", "x")) and not limiter.allow(("a", "x"))
    clock[0] += 60  # never more than the burst
    assert [limiter.allow(("a", "x")) for _ in range(4)] == [True, True, True, False]
