"""The frame API end to end: GStreamer RTSP camera -> real camera process -> Redis frame bus ->
real frame server -> clients (the stub generated from our proto, and ``edgeproxy.client``)."""

from __future__ import annotations

import base64
import json
import threading
import time

import cv2
import grpc
import numpy as np
import pytest

from edgeproxy.client import CameraNotFound, CameraUnavailable, FrameClient, InvalidRequest, latest_jpeg
from tests.support.services import wait_until
from tests.worker.frames.conftest import (
    CAMERA,
    DOWN_CAMERA,
    FPS,
    HEIGHT,
    HOST,
    NO_PROCESS_CAMERA,
    SHM_DIR,
    WIDTH,
    status_of,
)
from worker.camera import keys
from worker.frames.proto import video_streaming_pb2 as pb

pytestmark = pytest.mark.usefixtures("cameras")


def now_ms() -> int:
    return int(time.time() * 1000)


def code_of(call, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        result = call(*args, **kwargs)
        if hasattr(result, "__iter__") and not isinstance(result, pb.VideoFrame):
            list(result)
    return info.value.code(), info.value.details()


# --- VideoLatestImage -------------------------------------------------------------------------


def test_latest_frame_has_the_camera_shape(stub):
    frame = stub.VideoLatestImage(pb.VideoFrameRequest(device_id=CAMERA), timeout=10)
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    assert len(frame.data) == WIDTH * HEIGHT * 3
    assert [(d.size, d.name) for d in frame.shape.dim] == [(HEIGHT, "0"), (WIDTH, "1"), (3, "2")]
    assert frame.device_id == CAMERA
    assert frame.codec_name == "h264" and frame.frame_type in ("I", "P", "B")
    assert abs(frame.timestamp - now_ms()) < 3000  # receive wall clock, ms
    assert frame.time_base > 0
    image = np.frombuffer(frame.data, np.uint8).reshape(HEIGHT, WIDTH, 3)
    assert image.std() > 1  # a picture, not a blank buffer


def test_camera_writes_bgr24_once_and_both_paths_give_the_same_picture(frame_server):
    """The camera converts each frame to BGR24 once, into its shared-memory ring; a local reader
    maps it, the frame server serves the same bytes over gRPC."""
    with FrameClient(frame_server, shm_dir=SHM_DIR) as local, FrameClient(frame_server, shm_dir="off") as remote:
        for _attempt in range(20):  # the keyframe read both ways must be the same one
            image, meta = remote.latest(CAMERA, keyframe_only=True)
            mine, my_meta = local.latest(CAMERA, keyframe_only=True)
            if my_meta["seq"] == meta["seq"]:
                break
        else:
            pytest.fail("the keyframe changed under every attempt")
    assert (meta["via"], my_meta["via"]) == ("grpc", "shm")
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    assert np.array_equal(image, mine)
    # the test pattern: a white ball on black
    white = image.min(axis=2) > 200
    assert image.mean() < 30 and 200 < white.sum() < WIDTH * HEIGHT // 10


def test_two_clients_each_get_a_stream_of_ever_newer_frames(stub):
    duration = 2.0
    results: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def consume(slot: int):
        try:
            end = time.monotonic() + duration
            while time.monotonic() < end:
                frame, call = stub.VideoLatestImage.with_call(pb.VideoFrameRequest(device_id=CAMERA), timeout=5)
                seq = int(dict(call.initial_metadata())["x-edgeproxy-seq"])
                assert len(frame.data) == WIDTH * HEIGHT * 3
                results[slot].append((frame.timestamp, seq))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,)) for i in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    for slot, seen in results.items():
        # never older than a frame already returned to that caller
        assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)), f"client {slot} went back in time"
        distinct = sorted(set(seen))
        # both clients see (nearly) every frame: nothing is split between them
        assert len(distinct) >= FPS * duration * 0.5, f"client {slot}: {len(distinct)} frames in {duration}s"
        assert len({ts for ts, _ in distinct}) == len(distinct)  # strictly increasing timestamps
    common = set(results[0]) & set(results[1])
    assert len(common) >= FPS * duration * 0.3  # the same frames went to both


def test_after_metadata_returns_each_frame_once(frame_server):
    with FrameClient(frame_server) as frames:
        got = [meta for _image, meta in frames.frames(CAMERA, limit=15)]
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(b["timestamp"] > a["timestamp"] for a, b in zip(got, got[1:], strict=False))


def test_keyframe_only(stub, frames_redis):
    frame = stub.VideoLatestImage(pb.VideoFrameRequest(device_id=CAMERA, key_frame_only=True), timeout=10)
    assert frame.is_keyframe and frame.frame_type == "I"
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    assert frames_redis.client().pttl(keys.demand_keyframes(CAMERA)) > 0


def test_unknown_camera_is_not_found(stub):
    code, details = code_of(stub.VideoLatestImage, pb.VideoFrameRequest(device_id="no-such-camera"), timeout=5)
    assert code == grpc.StatusCode.NOT_FOUND and "no-such-camera" in details
    code, _ = code_of(stub.VideoLatestImage, pb.VideoFrameRequest(device_id=""), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, details = code_of(stub.VideoLatestImage, pb.VideoFrameRequest(device_id=f"{CAMERA}:ring"), timeout=5)
    assert code == grpc.StatusCode.NOT_FOUND and "camera names are" in details


@pytest.mark.parametrize("name", [DOWN_CAMERA, NO_PROCESS_CAMERA])
def test_camera_not_streaming_is_unavailable_within_the_deadline(stub, name):
    started = time.monotonic()
    code, details = code_of(stub.VideoLatestImage, pb.VideoFrameRequest(device_id=name), timeout=3)
    assert code == grpc.StatusCode.UNAVAILABLE, details
    assert "not streaming" in details
    assert time.monotonic() - started < 3


# --- VideoBufferedImage -----------------------------------------------------------------------


def ring_ids_ms(client, start: int, end: int) -> list[int]:
    """Receive times (entry ids) of the ring packets in [start, end] ms."""
    return [int(entry_id.split(b"-")[0]) for entry_id, _ in client.xrange(keys.ring(CAMERA), start, end)]


def test_buffered_range_returns_every_frame_in_order(stub, frames_redis):
    client = frames_redis.client()
    wait_until(lambda: ring_ids_ms(client, "-", "+") and
               ring_ids_ms(client, "-", "+")[-1] - ring_ids_ms(client, "-", "+")[0] > 3500, 20,
               message="3.5 s of buffered packets")
    newest = ring_ids_ms(client, "-", "+")[-1]
    start, end = newest - 2700, newest - 700  # starts mid-GOP: decoding begins at the keyframe before
    expected = ring_ids_ms(client, start, end)
    frames = list(stub.VideoBufferedImage(
        pb.VideoFrameBufferedRequest(device_id=CAMERA, timestamp_from=start, timestamp_to=end), timeout=60))
    stamps = [f.timestamp for f in frames]
    assert len(frames) == len(expected), (len(frames), len(expected))
    assert stamps == sorted(stamps)
    assert all(start <= ts <= end for ts in stamps)
    assert stamps == expected
    assert all((f.width, f.height, len(f.data)) == (WIDTH, HEIGHT, WIDTH * HEIGHT * 3) for f in frames)
    assert all(f.device_id == CAMERA for f in frames)


def test_buffered_validation_and_deadline(stub):
    now = now_ms()
    code, _ = code_of(stub.VideoBufferedImage, pb.VideoFrameBufferedRequest(
        device_id="no-such-camera", timestamp_from=now - 1000, timestamp_to=now), timeout=5)
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = code_of(stub.VideoBufferedImage, pb.VideoFrameBufferedRequest(
        device_id=CAMERA, timestamp_from=now, timestamp_to=now - 1000), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "before" in details
    # A caller reading slowly: its deadline ends the stream on time, whatever is left to decode.
    started = time.monotonic()
    received = 0
    with pytest.raises(grpc.RpcError) as info:
        for _frame in stub.VideoBufferedImage(pb.VideoFrameBufferedRequest(
                device_id=CAMERA, timestamp_from=1, timestamp_to=now), timeout=0.5):
            received += 1
            time.sleep(0.1)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0 < received < 10 and time.monotonic() - started < 2
    # and the server is still fine
    assert stub.SystemTime(pb.SystemTimeRequest(), timeout=5).current_time > 0


def test_client_buffered(frame_server, frames_redis):
    newest = ring_ids_ms(frames_redis.client(), "-", "+")[-1]
    with FrameClient(frame_server) as frames:
        got = list(frames.buffered(CAMERA, newest - 1000, newest))
    assert got and all(image.shape == (HEIGHT, WIDTH, 3) for image, _ in got)
    assert all(newest - 1000 <= meta["timestamp"] <= newest for _, meta in got)


# --- probe, list, proxy, storage, time, annotate --------------------------------------------------


def test_probe(stub, frames_redis):
    reply = stub.VideoProbe(pb.VideoProbeRequest(device_id=CAMERA), timeout=5)
    codec = reply.video_codec
    assert codec.name == "h264" and (codec.width, codec.height) == (WIDTH, HEIGHT)
    assert codec.extradata_size == len(codec.extradata)
    buffer = reply.buffer
    assert buffer.frames > 0 and buffer.start_time < buffer.end_time
    assert buffer.duration_seconds == (buffer.end_time - buffer.start_time) // 1000
    assert abs(buffer.frames - frames_redis.client().xlen(keys.ring(CAMERA))) <= FPS  # ring moves on
    assert FPS * 0.7 <= buffer.approximate_fps <= FPS * 1.3
    code, _ = code_of(stub.VideoProbe, pb.VideoProbeRequest(device_id="no-such-camera"), timeout=5)
    assert code == grpc.StatusCode.NOT_FOUND


def test_list_streams(stub, cameras, frames_redis):
    streams = {s.name: s for s in stub.ListStreams(pb.ListStreamRequest(), timeout=5)}
    assert {CAMERA, DOWN_CAMERA, NO_PROCESS_CAMERA} <= set(streams)
    assert streams[CAMERA].running and streams[CAMERA].status == "running"
    # The pid served is the camera process's own: the one it reports in its status key.
    client = frames_redis.client()
    assert streams[CAMERA].pid == status_of(client, CAMERA)["pid"] == cameras["live"].pid
    assert streams[DOWN_CAMERA].pid == status_of(client, DOWN_CAMERA)["pid"] != streams[CAMERA].pid
    assert not streams[NO_PROCESS_CAMERA].running and streams[NO_PROCESS_CAMERA].status == "exited"


def test_proxy_validation(stub):
    code, details = code_of(stub.Proxy, pb.ProxyRequest(device_id="", passthrough=True), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "device_id" in details
    code, _ = code_of(stub.Proxy, pb.ProxyRequest(device_id="no-such-camera", passthrough=True), timeout=5)
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = code_of(stub.Proxy, pb.ProxyRequest(device_id=DOWN_CAMERA, passthrough=True), timeout=5)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "RTMP" in details
    # turning it off never needs an RTMP endpoint
    assert stub.Proxy(pb.ProxyRequest(device_id=DOWN_CAMERA, passthrough=False), timeout=5).passthrough is False


def test_proxy_switches_rtmp_passthrough(stub, frames_redis, rtmp_receiver):
    client = frames_redis.client()
    reply = stub.Proxy(pb.ProxyRequest(device_id=CAMERA, passthrough=True), timeout=5)
    try:
        assert (reply.device_id, reply.passthrough) == (CAMERA, True)
        assert client.get(keys.rtmp_switch(CAMERA)) == b"1"
        # A missing part fails the test, never skips it.
        assert rtmp_receiver is not None, "ffmpeg (the RTMP receiver) is missing: bin/bootstrap --test installs it"
        wait_until(lambda: status_of(client, CAMERA).get("rtmp_streaming"), 20, message="rtmp_streaming")
        size = rtmp_receiver.stat().st_size if rtmp_receiver.exists() else 0
        wait_until(lambda: rtmp_receiver.exists() and rtmp_receiver.stat().st_size > size, 20,
                   message="RTMP data arriving")
        reply = stub.Proxy(pb.ProxyRequest(device_id=CAMERA, passthrough=False), timeout=5)
        assert reply.passthrough is False and client.get(keys.rtmp_switch(CAMERA)) == b"0"
        wait_until(lambda: not status_of(client, CAMERA).get("rtmp_streaming"), 20, message="rtmp stopped")
    finally:
        client.set(keys.rtmp_switch(CAMERA), "0")


def test_storage_flag(stub, frames_redis):
    client = frames_redis.client()
    reply = stub.Storage(pb.StorageRequest(device_id=CAMERA, start=True), timeout=5)
    assert (reply.device_id, reply.start) == (CAMERA, True) and client.get(keys.storage_flag(CAMERA)) == b"1"
    reply = stub.Storage(pb.StorageRequest(device_id=CAMERA, start=False), timeout=5)
    assert reply.start is False and client.get(keys.storage_flag(CAMERA)) == b"0"
    code, _ = code_of(stub.Storage, pb.StorageRequest(device_id="", start=True), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(stub.Storage, pb.StorageRequest(device_id="no-such-camera", start=True), timeout=5)
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = code_of(stub.Storage, pb.StorageRequest(device_id=DOWN_CAMERA, start=True), timeout=5)
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_system_time(stub):
    before = now_ms()
    current = stub.SystemTime(pb.SystemTimeRequest(), timeout=5).current_time
    assert before - 5 <= current <= now_ms() + 5


def test_annotate_hands_the_event_to_the_control_plane(stub, frames_redis):
    client = frames_redis.client()
    client.delete("control")
    start = now_ms()
    request = pb.AnnotateRequest(
        device_name=CAMERA, remote_stream_id="remote-1", type="entry", start_timestamp=start,
        end_timestamp=start + 1500, object_type="person", confidence=0.87,
        object_bouding_box=pb.BoudingBox(top=10, left=20, width=30, height=40),
        location=pb.Location(lat=46.05, lon=14.5), mask=[pb.Coordinate(x=1, y=2), pb.Coordinate(x=3, y=4)],
        object_signature=[0.1, 0.2], ml_model="yolo", width=WIDTH, height=HEIGHT, is_keyframe=True,
        custom_meta_1="red")
    reply = stub.Annotate(request, timeout=10)
    assert (reply.device_name, reply.remote_stream_id, reply.type, reply.start_timestamp) == (
        CAMERA, "remote-1", "entry", start)
    assert client.llen("control") == 1
    message = json.loads(client.lindex("control", 0))
    assert message["headers"]["task"] == "processes.record_annotation"
    _args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert kwargs["host"] == HOST and kwargs["device_name"] == CAMERA and kwargs["type"] == "entry"
    assert kwargs["start_timestamp"] == start and kwargs["end_timestamp"] == start + 1500
    assert kwargs["object_bouding_box"] == {"top": 10, "left": 20, "width": 30, "height": 40}
    assert kwargs["mask"] == [{"x": 1.0, "y": 2.0, "z": 0.0}, {"x": 3.0, "y": 4.0, "z": 0.0}]
    assert kwargs["object_coordinate"] is None and kwargs["custom_meta_1"] == "red"
    client.delete("control")


@pytest.mark.parametrize("fields, message", [
    ({"type": "entry", "start_timestamp": "now"}, "device_name and type"),
    ({"device_name": CAMERA, "start_timestamp": "now"}, "device_name and type"),
    ({"device_name": CAMERA, "type": "entry", "start_timestamp": -1}, "device_name and type"),
    ({"device_name": CAMERA, "type": "entry", "start_timestamp": "8 days ago"}, "within 7 days"),
    ({"device_name": CAMERA, "type": "entry", "start_timestamp": "in 8 days"}, "within 7 days"),
    ({"device_name": CAMERA, "type": "entry", "start_timestamp": "seconds"}, "within 7 days"),
])
def test_annotate_validation(stub, frames_redis, fields, message):
    day = 24 * 3600 * 1000
    resolve = {"now": now_ms(), "8 days ago": now_ms() - 8 * day, "in 8 days": now_ms() + 8 * day,
               "seconds": int(time.time())}
    fields = {k: resolve.get(v, v) if isinstance(v, str) and k == "start_timestamp" else v for k, v in fields.items()}
    before = frames_redis.client().llen("control")
    code, details = code_of(stub.Annotate, pb.AnnotateRequest(**fields), timeout=5)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details
    assert frames_redis.client().llen("control") == before


# --- edgeproxy.client ---------------------------------------------------------------------------


def test_latest_jpeg_decodes_to_the_camera_size(frame_server):
    jpeg = latest_jpeg(frame_server, CAMERA, quality=70)
    assert jpeg[:2] == b"\xff\xd8"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (HEIGHT, WIDTH, 3)
    with pytest.raises(CameraNotFound):
        latest_jpeg(frame_server, "no-such-camera")


def test_frame_client(frame_server):
    with FrameClient(frame_server) as frames:
        image, meta = frames.latest(CAMERA)
        assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
        assert meta["device_id"] == CAMERA and meta["width"] == WIDTH and meta["seq"] is not None
        key_image, key_meta = frames.latest(CAMERA, keyframe_only=True)
        assert key_image.shape == (HEIGHT, WIDTH, 3) and key_meta["is_keyframe"]
        probe = frames.probe(CAMERA)
        assert probe["codec"]["name"] == "h264" and probe["buffer"]["frames"] > 0
        assert {c["name"] for c in frames.list()} >= {CAMERA, DOWN_CAMERA}
        assert abs(frames.system_time() - now_ms()) < 1000
        with pytest.raises(CameraNotFound):
            frames.latest("no-such-camera")
        with pytest.raises(CameraUnavailable):
            frames.latest(DOWN_CAMERA)
        with pytest.raises(InvalidRequest):
            frames.proxy(DOWN_CAMERA, True)
        assert frames.storage(CAMERA, False) is False
        start = now_ms()
        box = {"top": 1, "left": 2, "width": 3, "height": 4}
        reply = frames.annotate(CAMERA, "exit", start, object_bouding_box=box)
        assert reply == {"device_name": CAMERA, "remote_stream_id": "", "type": "exit", "start_timestamp": start}
        with pytest.raises(InvalidRequest, match="within 7 days"):
            frames.annotate(CAMERA, "exit", 1000)
