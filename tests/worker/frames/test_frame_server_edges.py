"""Frame server behaviour that needs no camera process: frame records written straight to the
frame bus (big frames), API keys and TLS, the frame bus going away, handler errors."""

from __future__ import annotations

import datetime
import json
import sys
import time

import av
import grpc
import numpy as np
import pytest

from edgeproxy.client import CameraNotFound, CameraUnavailable, FrameClient, NotAuthorized, ServerUnavailable
from tests.support.services import Process, free_port, wait_port
from tests.worker.frames.conftest import HOST, MAX_MESSAGE, server_env, table_entry
from worker.camera import keys
from worker.frames.config import FrameServerConfig
from worker.frames.proto import video_streaming_pb2 as pb
from worker.frames.proto import video_streaming_pb2_grpc as pb_grpc
from worker.frames.server import build_server

BIG = "cam-synthetic-1080p"


def now_ms() -> int:
    return int(time.time() * 1000)


def publish_frame(client, name: str, image: np.ndarray, seq: int, keyframe: bool = True,
                  data_format: str | None = None, size: tuple[int, int] | None = None) -> dict:
    """Write a frame record the way the camera process does (meta JSON + raw data: BGR24 without a
    ``data_format``, as camera processes wrote before the field; ``i420``: ``image`` is the packed
    (h * 3 / 2, w) planes and ``size`` the (height, width))."""
    height, width = size or image.shape[:2]
    meta = {"seq": seq, "ts": now_ms(), "width": width, "height": height, "pts": seq * 3600, "dts": seq * 3600,
            "time_base": 1 / 90000, "frame_type": "I" if keyframe else "P", "is_keyframe": keyframe,
            "is_corrupt": False, "codec_name": "h264", "pix_fmt": "yuv420p"}
    if data_format:
        meta["data_format"] = data_format
    pipe = client.pipeline()
    for key in (keys.frame_latest(name),) + ((keys.frame_keyframe(name),) if keyframe else ()):
        pipe.hset(key, mapping={"meta": json.dumps(meta), "data": image.tobytes()})
        pipe.expire(key, keys.FRAME_TTL_S)
    pipe.set(keys.status(name), json.dumps({"state": "streaming", "width": width, "height": height}),
             ex=keys.STATUS_TTL_S)
    pipe.execute()
    return meta


@pytest.fixture(scope="module")
def plain_server(workdir, frames_redis):
    port = free_port()
    process = Process([sys.executable, "-m", "worker.frames"], workdir / "frame-server-edges.log",
                      env=server_env(frames_redis.url, port))
    wait_port(port, 15)
    yield f"127.0.0.1:{port}"
    process.stop()
    assert "Traceback" not in process.output()


def test_1080p_frame_passes_message_limits(frames_redis, plain_server):
    client = frames_redis.client()
    image = np.random.default_rng(1).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    meta = publish_frame(client, BIG, image, seq=7)
    with FrameClient(plain_server) as frames:
        got, got_meta = frames.latest(BIG)
    assert got.shape == (1080, 1920, 3) and got.dtype == np.uint8
    assert np.array_equal(got, image)
    assert got_meta["seq"] == 7 and got_meta["timestamp"] == meta["ts"] and got_meta["is_keyframe"]
    got[0, 0] = 0  # writable by default (AI programs draw on frames)
    # demand was requested on the frame bus
    assert 0 < client.pttl(keys.demand_all(BIG)) <= keys.DEMAND_TTL_MS


def test_i420_frames_are_served_as_bgr24(frames_redis, plain_server):
    """The camera publishes I420; clients get BGR24 as before, converted by the frame server."""
    client = frames_redis.client()
    # a picture with structure and colour: gradients in Y, flat but different U and V regions
    height, width = 1080, 1920
    y = np.add.outer(np.arange(height) // 5, np.arange(width) // 9).astype(np.uint8)
    u = np.full((height // 2, width // 2), 90, np.uint8)
    v = np.full((height // 2, width // 2), 170, np.uint8)
    u[:, width // 4:] = 200
    planes = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(height * 3 // 2, width)
    expected = av.VideoFrame.from_ndarray(planes, format="yuv420p").to_ndarray(format="bgr24")  # swscale's
    name = "cam-synthetic-i420"
    publish_frame(client, name, planes, seq=1, data_format="i420", size=(height, width))
    with FrameClient(plain_server) as frames:
        got, meta = frames.latest(name)
        assert got.shape == (height, width, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - expected.astype(int)).mean() < 3
        raw, _seq = frames.latest_frame(name)
        assert len(raw.data) == width * height * 3 and [d.size for d in raw.shape.dim] == [height, width, 3]
        # explicitly bgr24 records are served unchanged
        image = np.random.default_rng(2).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        publish_frame(client, name, image, seq=2, data_format="bgr24")
        got, meta = frames.latest(name, after=dict(meta))
        assert meta["seq"] == 2 and np.array_equal(got, image)
        # a record whose data does not fit its meta is refused with a reason, not served garbled
        publish_frame(client, name, planes[: height // 2], seq=3, data_format="i420", size=(height, width))
        with pytest.raises(CameraUnavailable, match="malformed frame"):
            frames.latest(name, after=dict(meta))


def test_stale_frame_is_not_served_and_newer_frame_wait(frames_redis, plain_server):
    client = frames_redis.client()
    image = np.zeros((48, 64, 3), np.uint8)
    name = "cam-synthetic-stale"
    meta = publish_frame(client, name, image, seq=1)
    stale = dict(meta, ts=meta["ts"] - 60_000)
    client.hset(keys.frame_latest(name), "meta", json.dumps(stale))
    with FrameClient(plain_server) as frames:
        started = time.monotonic()
        with pytest.raises(CameraUnavailable, match="no frame within"):
            frames.latest(name, timeout=1.0)
        assert time.monotonic() - started < 1.5  # the wait respects the caller's deadline
        # A fresh frame arriving while a caller waits is returned at once.
        first = publish_frame(client, name, image, seq=2)
        _, got = frames.latest(name)
        assert got["seq"] == 2
        # "after" waits for the next frame (each frame once)
        import threading

        threading.Timer(0.3, publish_frame, (client, name, image, 3)).start()
        started = time.monotonic()
        _, got = frames.latest(name, after=dict(first, timestamp=first["ts"]))
        assert got["seq"] == 3 and 0.2 < time.monotonic() - started < 1.5


def test_status_not_streaming_and_missing(frames_redis, plain_server):
    client = frames_redis.client()
    client.hset(keys.host_cameras(HOST), "cam-synthetic-table-only", table_entry("9", has_rtmp=False))
    client.set(keys.status("cam-synthetic-reconnecting"),
               json.dumps({"state": "reconnecting", "last_error": "connection refused"}), ex=5)
    with FrameClient(plain_server) as frames:
        with pytest.raises(CameraUnavailable, match="no status"):
            frames.latest("cam-synthetic-table-only")
        with pytest.raises(CameraUnavailable, match="reconnecting.*connection refused"):
            frames.latest("cam-synthetic-reconnecting")
        with pytest.raises(CameraNotFound):
            frames.latest("cam-synthetic-nowhere")


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    return tmp_path / "cert.pem", tmp_path / "key.pem", cert_pem


def test_api_keys_and_tls(workdir, frames_redis, tmp_path):
    cert, key, cert_pem = _self_signed(tmp_path)
    (tmp_path / "keys").write_text("# frame API keys\nfile-key-1\n")
    port = free_port()
    env = server_env(frames_redis.url, port, EDGEPROXY_GRPC_TOKENS="env-key-1, env-key-2",
                     EDGEPROXY_GRPC_TOKENS_FILE=str(tmp_path / "keys"), EDGEPROXY_GRPC_TLS_CERT=str(cert),
                     EDGEPROXY_GRPC_TLS_KEY=str(key))
    process = Process([sys.executable, "-m", "worker.frames"], workdir / "frame-server-auth.log", env=env)
    try:
        wait_port(port, 15)
        address = f"localhost:{port}"
        with FrameClient(address, tls=True, root_certificates=cert_pem) as anonymous:
            with pytest.raises(NotAuthorized, match="authorization: Token"):
                anonymous.system_time()
            with pytest.raises(NotAuthorized):
                list(anonymous.buffered("x", 1, 2))
        with FrameClient(address, token="wrong", tls=True, root_certificates=cert_pem) as wrong, \
                pytest.raises(NotAuthorized):
            wrong.list()
        for token in ("env-key-2", "file-key-1"):
            with FrameClient(address, token=token, tls=True, root_certificates=cert_pem) as frames:
                assert abs(frames.system_time() - now_ms()) < 2000
        # plaintext to a TLS port does not work
        with FrameClient(address, token="env-key-1", timeout=2) as plaintext, \
                pytest.raises((ServerUnavailable, CameraUnavailable)):
            plaintext.system_time()
    finally:
        process.stop()
    assert "env-key" not in process.output() and "file-key" not in process.output()


@pytest.mark.parametrize("bad, message", [
    ({"EDGEPROXY_GRPC_PORT": "http"}, "EDGEPROXY_GRPC_PORT must be an integer"),
    ({"EDGEPROXY_GRPC_TLS_CERT": "/x.pem"}, "set both EDGEPROXY_GRPC_TLS_CERT and EDGEPROXY_GRPC_TLS_KEY"),
    ({"EDGEPROXY_GRPC_TOKENS_FILE": "/nonexistent/keys"}, "EDGEPROXY_GRPC_TOKENS_FILE: cannot read"),
])
def test_bad_configuration_exits_with_a_message(workdir, frames_redis, bad, message):
    process = Process([sys.executable, "-m", "worker.frames"], workdir / "frame-server-badconf.log",
                      env=server_env(frames_redis.url, free_port(), **bad))
    assert process.popen.wait(15) == 2
    output = process.output()
    process.stop()
    assert message in output


def test_frame_bus_down_is_unavailable_and_errors_never_kill_the_server(frames_redis):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    config = FrameServerConfig(port=free_port(), bind="127.0.0.1", redis_url=dead, host=HOST, broker_url=dead,
                               workers=4)
    server, servicer, port = build_server(config)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
    stub = pb_grpc.ImageStub(channel)
    try:
        for call, request in ((stub.VideoLatestImage, pb.VideoFrameRequest(device_id="a")),
                              (stub.VideoProbe, pb.VideoProbeRequest(device_id="a")),
                              (stub.Proxy, pb.ProxyRequest(device_id="a", passthrough=False))):
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
            assert "frame bus (Redis) unavailable" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            list(stub.ListStreams(pb.ListStreamRequest(), timeout=10))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # Broker down: the annotation cannot be handed over.
        with pytest.raises(grpc.RpcError) as info:
            stub.Annotate(pb.AnnotateRequest(device_name="a", type="t", start_timestamp=now_ms()), timeout=20)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # A bug in a handler is INTERNAL for that call only.
        servicer.redis = None
        with pytest.raises(grpc.RpcError) as info:
            stub.VideoProbe(pb.VideoProbeRequest(device_id="a"), timeout=10)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert stub.SystemTime(pb.SystemTimeRequest(), timeout=5).current_time > 0
        # Frame bus back: served again without a restart.
        servicer.redis = frames_redis.client()
        names = [s.name for s in stub.ListStreams(pb.ListStreamRequest(), timeout=5)]
        assert "cam-synthetic-table-only" in names
    finally:
        channel.close()
        server.stop(0).wait(5)
        servicer.stop()


def test_keyframes_of_a_long_gop(frames_redis, plain_server):
    """A keyframe older than the max age is still the newest keyframe when the GOP is long."""
    client = frames_redis.client()
    name = "cam-synthetic-long-gop"
    image = np.zeros((48, 64, 3), np.uint8)
    meta = publish_frame(client, name, image, seq=1)
    client.hset(keys.frame_keyframe(name), "meta", json.dumps(dict(meta, ts=meta["ts"] - 5000)))
    with FrameClient(plain_server) as frames:
        # First call of a run of demand: waits for a newer keyframe, then settles for this one.
        started = time.monotonic()
        _, got = frames.latest(name, keyframe_only=True, timeout=1.0)
        assert got["seq"] == 1 and got["is_keyframe"] and 0.8 < time.monotonic() - started < 1.5
        assert client.pttl(keys.demand_keyframes(name)) > 0
        # Demand continues: a keyframe decoded since (another seq) is served at once, however old.
        client.hset(keys.frame_keyframe(name), "meta", json.dumps(dict(meta, seq=2, ts=meta["ts"] - 4000)))
        started = time.monotonic()
        _, got = frames.latest(name, keyframe_only=True, timeout=1.0)
        assert got["seq"] == 2 and time.monotonic() - started < 0.5
