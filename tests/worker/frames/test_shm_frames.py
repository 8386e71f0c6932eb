"""Frames through shared memory, with the real parts: GStreamer RTSP cameras, the real camera
process writing its ring under a test directory in /dev/shm, the real frame server reading it, and
``FrameClient`` choosing shared memory or gRPC by itself."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import sys
import time

import numpy as np
import pytest

from edgeproxy.client import CameraNotFound, CameraUnavailable, FrameClient
from tests.support.services import Process, RtspCamera, free_port, wait_until
from tests.worker.frames.conftest import (
    CAMERA,
    DOWN_CAMERA,
    FPS,
    HEIGHT,
    NO_PROCESS_CAMERA,
    RING_SLOTS,
    SHM_DIR,
    WIDTH,
    camera_env,
    status_of,
    table_entry,
)
from worker.camera import keys, shm
from worker.frames.proto import video_streaming_pb2 as pb


def ring_path(name: str) -> str:
    return os.path.join(SHM_DIR, shm.ring_name(name, name))


@pytest.fixture(scope="module")
def local(frame_server, cameras):
    with FrameClient(frame_server, shm_dir=SHM_DIR) as client:
        yield client


# --- the client picks the path, the errors are the same ---------------------------------------------


def test_client_reads_frames_from_shared_memory_on_the_cameras_host(local, frames_redis):
    image, meta = local.latest(CAMERA)
    assert meta["via"] == "shm"
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    assert image.flags.writeable  # a copy by default, as before
    assert 0 < time.time() * 1000 - meta["timestamp"] < 2000
    seqs = []
    for _image, meta in local.frames(CAMERA, limit=20):
        seqs.append(meta["seq"])
        if len(seqs) == 5:
            time.sleep(3 / FPS)  # a consumer busy for three frame intervals, fewer than the ring holds
    # Every frame once, in order: the frames it fell behind by came from the ring, none was skipped.
    assert seqs == list(range(seqs[0], seqs[0] + 20)), seqs
    # No frame bytes went through Redis.
    client = frames_redis.client()
    assert not client.exists(keys.frame_latest(CAMERA)) and not client.exists(keys.frame_keyframe(CAMERA))
    status = status_of(client, CAMERA)
    assert status["frames_ring"] == shm.ring_name(CAMERA, CAMERA)


def test_client_uses_grpc_where_the_ring_is_not_readable(frame_server, cameras, tmp_path):
    for shm_dir in ("off", str(tmp_path)):  # no shared memory; a host without this camera's ring
        with FrameClient(frame_server, shm_dir=shm_dir) as remote:
            image, meta = remote.latest(CAMERA)
            assert meta["via"] == "grpc"
            assert image.shape == (HEIGHT, WIDTH, 3)
            assert image.flags.writeable  # a copy by default, as before
            _image, newer = remote.latest(CAMERA, after=meta)
            assert newer["seq"] > meta["seq"]
    # Read-only arrays over gRPC are the received reply's bytes (no copy), with the same pixels and
    # fields as the message the original's clients parse.
    with FrameClient(frame_server, shm_dir="off", writable=False) as remote:
        image, meta = remote.latest(CAMERA)
        assert not image.flags.writeable and image.shape == (HEIGHT, WIDTH, 3)
        message, seq = remote.latest_frame(CAMERA, after=None)
        again, meta_again = remote.latest(CAMERA, after={"timestamp": message.timestamp - 1, "seq": -1})
        if meta_again["seq"] == seq:  # the same frame both ways (else the camera moved on: compare fields)
            assert again.tobytes() == message.data
        assert {k: meta_again[k] for k in ("width", "height", "device_id", "codec_name")} == {
            "width": message.width, "height": message.height, "device_id": message.device_id,
            "codec_name": message.codec_name}


def test_a_local_reader_keeps_the_camera_decoding_without_asking_the_frame_server(local, frames_redis):
    client = frames_redis.client()
    local.latest(CAMERA)  # the ring and its demand file are mapped
    client.delete(keys.demand_all(CAMERA))  # the frame server sets it again on every call it gets
    started = time.monotonic()
    seqs = [meta["seq"] for _image, meta in local.frames(CAMERA, limit=3 * FPS)]
    assert time.monotonic() - started > 2.5  # the camera polls the Redis demand keys every second
    # Every frame kept coming: the reader's demand reached the camera through the demand file ...
    assert len(set(seqs)) == 3 * FPS and seqs[-1] - seqs[0] <= 3 * FPS + 1, seqs
    assert status_of(client, CAMERA)["demand"] == "all"
    # ... and the reader did not call the frame server meanwhile (that would have set the key).
    assert not client.exists(keys.demand_all(CAMERA))


@pytest.mark.parametrize("shm_dir", [SHM_DIR, "off"], ids=["shm", "grpc"])
def test_unknown_and_stopped_cameras_give_the_same_errors_on_both_paths(frame_server, cameras, shm_dir):
    with FrameClient(frame_server, shm_dir=shm_dir) as client:
        with pytest.raises(CameraNotFound):
            client.latest("no-such-camera")
        for name in (DOWN_CAMERA, NO_PROCESS_CAMERA):
            with pytest.raises(CameraUnavailable):
                client.latest(name)


def test_zero_copy_views_say_when_the_slot_was_reused(frame_server, cameras):
    with FrameClient(frame_server, shm_dir=SHM_DIR, writable=False) as client:
        image, meta = client.latest(CAMERA)
        assert meta["via"] == "shm" and not image.flags.writeable
        assert client.intact(meta)
        wait_until(lambda: not client.intact(meta), 10, message=f"slot reused {RING_SLOTS} frames later")


def test_grpc_reply_comes_from_the_ring(stub, cameras):
    request = pb.VideoFrameRequest(device_id=CAMERA)
    frame, call = stub.VideoLatestImage.with_call(request, timeout=5)
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    assert len(frame.data) == WIDTH * HEIGHT * 3
    assert [d.size for d in frame.shape.dim] == [HEIGHT, WIDTH, 3]
    assert frame.device_id == CAMERA and frame.codec_name == "h264" and frame.frame_type in ("I", "P", "B")
    seq = dict(call.initial_metadata())["x-edgeproxy-seq"]
    frame2, call2 = stub.VideoLatestImage.with_call(
        request, timeout=5, metadata=(("x-edgeproxy-after", f"{frame.timestamp}:{seq}"),))
    assert int(dict(call2.initial_metadata())["x-edgeproxy-seq"]) > int(seq)
    image = np.frombuffer(frame2.data, np.uint8).reshape(HEIGHT, WIDTH, 3)
    assert image.std() > 5  # a picture, not a blank slot


def test_ring_is_readable_by_owner_and_group_only(cameras):
    path = ring_path(CAMERA)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o640, oct(mode)
    # Readers in the group store their demand beside it; that file holds no frame.
    demand_mode = stat.S_IMODE(os.stat(os.path.join(SHM_DIR, shm.demand_name(CAMERA, CAMERA))).st_mode)
    assert demand_mode == 0o660, oct(demand_mode)
    dir_mode = stat.S_IMODE(os.stat(SHM_DIR).st_mode)
    assert dir_mode & 0o007 == 0, oct(dir_mode)
    assert dir_mode & stat.S_ISVTX and dir_mode & stat.S_ISGID, oct(dir_mode)


# --- torn frames, slow and dead readers ---------------------------------------------------------------


def _write_uniform_frames(directory: str, seconds: float) -> None:
    """Writes 1080p frames, each of a single byte value, as fast as it can."""
    writer = shm.FrameRingWriter(shm.ShmSettings(directory=directory, slots=2), "torn", "")
    end = time.monotonic() + seconds
    value = 0
    while time.monotonic() < end:
        value = (value + 1) % 251
        writer.begin(1080, 1920)[...] = value
        writer.commit(1080, 1920, value, value, value, 0.001, 0, 0, False, False, "P", "yuv420p", "h264")
    writer.close()


def test_a_reader_never_sees_a_torn_frame(tmp_path):
    directory = f"/dev/shm/edgeproxy-torn-{os.getpid()}"
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_write_uniform_frames, args=(directory, 30.0))  # ended below, once read enough
    writer.start()
    try:
        path = os.path.join(directory, shm.ring_name("torn"))
        wait_until(lambda: os.path.exists(path), 10, message="ring written")
        reader = shm.FrameRingReader(path)
        wait_until(lambda: reader.write_seq > 0 or reader.closed, 10, message="first frame")
        if reader.closed:  # the writer replaced its first (smaller) file
            reader = shm.FrameRingReader(path)
        copies = views = 0
        # Two seconds of reads at least, and on until enough of each kind got through: on a loaded
        # machine the reads that lose the race to the writer (and retry) are most of them.
        end = time.monotonic() + 2.0
        while (time.monotonic() < end or copies <= 20 or views <= 5) and not reader.closed:
            found = reader.read(copy=True)
            if found is not None:
                image, meta = found
                assert image.min() == image.max(), f"torn frame {meta['seq']}: {image.min()}..{image.max()}"
                copies += 1
            found = reader.read(copy=False)
            if found is not None:
                view, meta = found
                low, high = int(view.min()), int(view.max())
                if reader.intact(meta):  # the view is vouched for only while its slot is intact
                    assert low == high, f"torn view {meta['seq']}"
                    views += 1
        # With 2 slots and a writer at full speed most reads race the writer; they must retry,
        # never return a mix.
        assert copies > 20 and views > 5, (copies, views)
    finally:
        writer.terminate()
        writer.join(10)
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


def test_next_frame_gives_every_frame_in_order_then_skips_to_the_newest():
    """The ring's per-frame read (``FrameClient.frames()`` takes it frame after frame): the frame
    after the one the reader has while its slot holds it, else the newest; None once nothing comes
    or the ring closed, without waiting out a closed ring."""
    directory = f"/dev/shm/edgeproxy-next-{os.getpid()}"
    writer = shm.FrameRingWriter(shm.ShmSettings(directory=directory, slots=4), "next", "")
    try:
        # A futex word with its high bit set (seq 2**31 + n) must still put the reader to sleep.
        writer.seq = 2**31

        def write(count: int, height: int = 48, width: int = 64) -> None:
            for _ in range(count):
                writer.begin(height, width)[...] = (writer.seq + 1) % 251  # the seq it gets
                writer.commit(height, width, int(time.time() * 1000), 0, 0, 0.04, 0, 0, False, False, "P",
                              "yuv420p", "h264")

        write(3)
        reader = shm.FrameRingReader(writer.path)
        first = 2**31 + 1
        got = [reader.next_frame(seq, 1.0) for seq in (first - 1, first, first + 1)]
        assert [meta["seq"] for _image, meta in got] == [first, first + 1, first + 2]
        for image, meta in got:
            assert image.shape == (48, 64, 3) and not image.flags.writeable
            assert int(image[0, 0, 0]) == meta["seq"] % 251 and reader.intact(meta)
        copy, meta = reader.next_frame(first - 1, 1.0, copy=True)
        assert copy.flags.writeable and int(copy.max()) == first % 251
        write(2)  # the reader fell behind by as many frames as the ring holds: all still there, in order
        _image, meta = reader.next_frame(first, 1.0)  # newest first + 4, the slots hold first + 1 on
        assert meta["seq"] == first + 1
        write(4)  # behind by more than the ring holds: the newest comes next
        _image, meta = reader.next_frame(first + 2, 1.0)
        assert meta["seq"] == first + 8
        # Nothing newer: None after the wait, which slept (the word's high bit is set).
        started = time.monotonic()
        assert reader.next_frame(first + 8, 0.2) is None
        assert time.monotonic() - started >= 0.15
        write(1, 500, 700)  # a frame bigger than the slots: a new file; the old ring says closed at once
        started = time.monotonic()
        assert reader.next_frame(first + 8, 5.0) is None and reader.closed
        assert time.monotonic() - started < 1.0
        image, meta = shm.FrameRingReader(writer.path).next_frame(first + 8, 1.0)
        assert image.shape == (500, 700, 3) and meta["seq"] == first + 9
    finally:
        writer.close()
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


STALL_READER = """
import os, sys, time
from worker.camera import shm
reader = shm.FrameRingReader(sys.argv[1])
mode = sys.argv[2]
print("mapped", flush=True)
while True:
    if mode == "slow":
        reader.read(copy=True)
        time.sleep(0.5)
    else:  # holds a view of a slot and never lets go; SIGSTOPped by the test
        found = reader.read(copy=False)
        time.sleep(0.01)
"""


def test_slow_and_stopped_readers_do_not_slow_the_camera(cameras, frames_redis, workdir, local):
    local.latest(CAMERA)  # demand on; FrameClient keeps it on while it is used
    readers = [Process([sys.executable, "-c", STALL_READER, ring_path(CAMERA), mode], workdir / f"reader-{mode}.log",
                       env=dict(os.environ, PYTHONPATH=os.getcwd()))
               for mode in ("slow", "stall", "stall")]
    try:
        wait_until(lambda: all("mapped" in r.output() for r in readers), 20, message="readers mapped the ring")
        os.kill(readers[1].pid, signal.SIGSTOP)  # a reader stopped in the middle of its work
        readers[2].stop()  # a reader that died
        client = frames_redis.client()
        # Frames arrive at the source's rate while the readers stall (the client keeps demand up).
        first = status_of(client, CAMERA)["published_frames"]
        started = time.monotonic()
        for _image, _meta in local.frames(CAMERA, limit=6 * FPS):
            pass
        elapsed = time.monotonic() - started
        published = status_of(client, CAMERA)["published_frames"] - first
        rate = published / elapsed
        # The count comes from the camera's status, written every half second, so either end may lag by
        # that much (CI-14 read 22.3/s over 4 s). A camera a reader holds up falls far below.
        assert rate >= 0.8 * FPS, f"camera published {published} frames in {elapsed:.1f}s ({rate:.1f}/s)"
    finally:
        for reader in readers:
            if reader.alive():
                os.kill(reader.pid, signal.SIGCONT)
            reader.stop()


# --- resolution change ------------------------------------------------------------------------------


def test_readers_get_the_new_size_after_a_resolution_change(workdir, frames_redis, frame_server):
    port = free_port()
    small = RtspCamera(workdir / "rtsp-small", port=port, width=320, height=240, fps=FPS, gop=FPS)
    name = "cam-resize"
    client = frames_redis.client()
    client.hset(keys.host_cameras("frames-test-host"), name, table_entry("9", has_rtmp=False))
    env = camera_env(name, small.url(), frames_redis.url)
    env["EDGEPROXY_BACKOFF_INITIAL_S"] = "0.1"
    env["EDGEPROXY_BACKOFF_MAX_S"] = "0.5"
    process = Process([sys.executable, "-m", "worker.camera"], workdir / f"camera-{name}.log", env=env)
    big = None
    try:
        wait_until(lambda: status_of(client, name).get("state") == "streaming", 30, message="streaming")
        with FrameClient(frame_server, shm_dir=SHM_DIR) as reader:
            image, meta = reader.latest(name)
            assert meta["via"] == "shm" and image.shape == (240, 320, 3)
            small.stop()
            big = RtspCamera(workdir / "rtsp-big", port=port, width=1280, height=720, fps=FPS, gop=FPS)
            shapes = set()

            def new_size() -> bool:
                try:
                    for image, meta in reader.frames(name, limit=5):
                        assert image.shape == (meta["height"], meta["width"], 3)
                        shapes.add(image.shape)
                except CameraUnavailable:
                    return False  # reconnecting
                return (720, 1280, 3) in shapes

            wait_until(new_size, 40, message="frames of the new size")
            assert shapes <= {(240, 320, 3), (720, 1280, 3)}, shapes
            image, meta = reader.latest(name)
            assert image.shape == (720, 1280, 3) and meta["via"] == "shm"
            # The bigger frames live in a new file under the same name; the old one is gone (the
            # demand file stays what it was).
            files = sorted(f for f in os.listdir(SHM_DIR) if f.startswith(name))
            assert files == sorted([shm.ring_name(name, name), shm.demand_name(name, name)]), files
    finally:
        process.stop()
        small.stop()
        if big is not None:
            big.stop()
    # A camera stopped with SIGTERM frees its ring (and demand file) itself.
    assert not os.path.exists(ring_path(name))
    assert not os.path.exists(os.path.join(SHM_DIR, shm.demand_name(name, name)))


def test_remove_ring_also_removes_files_a_killed_camera_left_half_made(tmp_path):
    """A camera killed between making its ring or demand file and renaming it into place leaves it
    under its temporary name: removing the camera's ring removes those too (CI-26 found one left
    after 100 connect/delete cycles), and nothing of another camera."""
    directory = f"/dev/shm/edgeproxy-leftover-{os.getpid()}"
    os.mkdir(directory)
    try:
        settings = shm.ShmSettings(directory=directory, slots=2)
        half_made = [f".{shm.ring_name('cam[1]', 'id-1')}.0a1b2c3d.tmp",
                     f".{shm.demand_name('cam[1]', 'id-1')}.4e5f6a7b.tmp"]
        other = f".{shm.ring_name('cam[2]', 'id-2')}.0a1b2c3d.tmp"
        for name in [*half_made, other, shm.ring_name("cam[1]", "id-1")]:
            open(os.path.join(directory, name), "wb").close()
        assert shm.remove_ring(settings, "cam[1]", "id-1")
        assert os.listdir(directory) == [other]
    finally:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
