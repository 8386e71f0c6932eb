"""The camera program end to end: real GStreamer RTSP cameras, real Redis, real RTMP receiver,
the program itself as a subprocess (``python -m worker.camera``). No mocks."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from tests.support.services import Process, RtspCamera, free_port, python, wait_until
from tests.worker.camera.conftest import consume
from worker.camera import keys
from worker.camera.frame_format import data_size, to_bgr
from worker.camera.ring import decode_range, ring_info
from worker.camera.state import FPS_WINDOW_S, RATE_WARMUP_S

FPS = 25


def wait_packets(program, seconds: float, message: str) -> dict:
    """The status once the camera has counted ``seconds`` worth of packets more than now (at
    ``FPS``): a wait on the packets themselves, never on the clock."""
    start = program.status()["packets"]
    return program.wait_status(lambda s: s["packets"] - start >= seconds * FPS, 3 * seconds + 5, message)


def wait_fps_window(program) -> dict:
    """The status once the camera's fps is measured over a full window of arrivals (the warm-up
    after connecting is not counted, then FPS_WINDOW_S of packets)."""
    return wait_packets(program, RATE_WARMUP_S + FPS_WINDOW_S, "a full fps window of packets")


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"EDGEPROXY_RTSP_URL": "rtsp://127.0.0.1:1/x"}, "EDGEPROXY_CAMERA_NAME"),
        ({"EDGEPROXY_CAMERA_NAME": "cfg-a"}, "EDGEPROXY_RTSP_URL"),
        ({"EDGEPROXY_CAMERA_NAME": "cfg-b", "EDGEPROXY_RTSP_URL": "http://admin:Hunter2-pw@10.0.0.1/x"},
         "must start with rtsp://"),
        ({"EDGEPROXY_CAMERA_NAME": "cfg-c", "EDGEPROXY_RTSP_URL": "rtsp://127.0.0.1:1/x",
          "EDGEPROXY_RTSP_TRANSPORT": "quic"}, "EDGEPROXY_RTSP_TRANSPORT must be one of tcp, udp"),
        ({"EDGEPROXY_CAMERA_NAME": "cfg-d", "EDGEPROXY_RTSP_URL": "rtsp://127.0.0.1:1/x",
          "EDGEPROXY_BUFFER_SECONDS": "ten"}, "EDGEPROXY_BUFFER_SECONDS must be a number"),
        ({"EDGEPROXY_CAMERA_NAME": "cfg-e", "EDGEPROXY_RTSP_URL_FILE": "/nonexistent/url.txt"},
         "EDGEPROXY_RTSP_URL_FILE"),
        ({"EDGEPROXY_CAMERA_NAME": "cfg-f", "EDGEPROXY_RTSP_URL": "rtsp://127.0.0.1:1/x",
          "EDGEPROXY_RTMP_URL": "udp://127.0.0.1:9/x"}, "EDGEPROXY_RTMP_URL must start with rtmp://"),
        ({"EDGEPROXY_CAMERA_NAME": "bad name", "EDGEPROXY_RTSP_URL": "rtsp://127.0.0.1:1/x"},
         "not a valid camera name"),
        ({"EDGEPROXY_CAMERA_NAME": "cfg-g", "EDGEPROXY_RTSP_URL": "rtsp://127.0.0.1:1/x",
          "EDGEPROXY_PUBLISH_FORMAT": "rgb"}, "EDGEPROXY_PUBLISH_FORMAT must be one of i420, bgr24"),
    ],
)
def test_configuration_errors_exit_non_zero_with_what_to_fix(env, expected):
    result = subprocess.run([python(), "-m", "worker.camera"], env={"PATH": "/usr/bin:/bin", **env},
                            capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Hunter2-pw" not in result.stderr + result.stdout


# --------------------------------------------------------------------------- streaming status


@pytest.mark.parametrize("codec, width, height, expected_codec", [
    ("h264", 640, 480, "h264"),
    ("h265", 352, 288, "hevc"),
])
def test_streaming_status_reports_measured_fps_size_and_codec(tmp_path, servers, cameras, codec, width, height,
                                                              expected_codec):
    camera = servers(RtspCamera(tmp_path, codec=codec, width=width, height=height, fps=FPS))
    program = cameras(f"st-{codec}", camera.url(), EDGEPROXY_BUFFER_SECONDS="0")
    program.wait_state("streaming", 10)
    status = wait_fps_window(program)  # the fps is measured over the last 3 s
    assert status["state"] == "streaming"
    assert abs(status["fps"] - FPS) <= FPS * 0.10, status
    assert (status["width"], status["height"], status["codec"]) == (width, height, expected_codec)
    assert status["pid"] == program.pid
    assert set(status) == set(keys.STATUS_FIELDS)
    assert status["reconnects"] == 0 and status["last_error"] is None
    assert status["rtmp_streaming"] is False and status["storing"] is False
    # refreshed every second (EDGEPROXY_STATUS_INTERVAL_MS), with a TTL so a dead process goes stale
    ttl = program.redis.pttl(keys.status(program.name))
    assert 0 < ttl <= keys.STATUS_TTL_S * 1000
    first = status["updated_at"]
    fresh = program.wait_status(lambda s: s["updated_at"] > first, 3, "the status written again")
    assert 0 <= fresh["updated_at"] - fresh["last_frame_at"] < 1000  # packets arriving as it is written
    # buffer 0: no ring at all; no consumer: nothing decoded
    assert not program.redis.exists(keys.ring(program.name))
    assert program.status()["decoded_frames"] == 0
    codec_info = json.loads(program.redis.get(keys.codec(program.name)))
    assert (codec_info["name"], codec_info["width"], codec_info["height"]) == (expected_codec, width, height)


# --------------------------------------------------------------------------- credentials


def test_password_camera_works_and_wrong_password_is_an_error_without_leaking_it(tmp_path, servers, cameras):
    password, wrong = "Secr3t-pw-777", "Wr0ng-pw-999"
    camera = servers(RtspCamera(tmp_path, user="admin", password=password, fps=FPS))
    url_file = tmp_path / "url.txt"
    url_file.write_text(camera.url() + "\n")
    good = cameras("auth-good", None, EDGEPROXY_RTSP_URL_FILE=str(url_file))
    bad = cameras("auth-bad", camera.url(password=wrong))

    good.wait_state("streaming", 10)
    status = bad.wait_state("error", 10)
    assert "401" in status["last_error"] or "Unauthorized" in status["last_error"], status
    first_reconnects = status["reconnects"]
    bad.wait_status(lambda s: s["reconnects"] >= first_reconnects + 2, 8, "more reconnect attempts")
    assert bad.process.alive() and bad.status()["state"] == "error"
    assert good.status()["state"] == "streaming"

    time.sleep(0.3)
    bad_output, good_output = bad.output(), good.output()
    assert wrong not in bad_output and wrong not in json.dumps(bad.status())
    assert password not in good_output and password not in json.dumps(good.status())
    assert "admin:***@" in bad_output  # the URL is logged, masked
    assert "retrying in" in bad_output


# --------------------------------------------------------------------------- reconnects


def test_camera_restart_is_noticed_and_recovered_in_the_same_process(tmp_path, servers, cameras):
    camera = servers(RtspCamera(tmp_path, fps=FPS))
    program = cameras("reconnect", camera.url())
    program.wait_state("streaming", 10)
    pid = program.pid

    camera.stop()
    killed = time.monotonic()
    program.wait_state("reconnecting", 5)
    assert time.monotonic() - killed < 5
    # several failed attempts: the back-off has grown past a few seconds
    program.wait_status(lambda s: s["reconnects"] >= 3, 15, "several failed attempts")

    camera.start()  # same port; returns once it listens
    back = time.monotonic()
    status = program.wait_state("streaming", 2.0)
    assert time.monotonic() - back <= 2.0
    assert status["pid"] == pid and program.process.alive()
    assert status["reconnects"] >= 2 and status["last_error"]
    program.wait_status(lambda s: s["packets"] > 0 and s["last_frame_at"] > time.time() * 1000 - 500, 3,
                        "fresh packets")
    output = program.output()
    assert "disconnected after" in output and "reconnecting in" in output


def test_camera_absent_at_start_is_retried_until_it_appears(tmp_path, servers, cameras):
    port = free_port()
    program = cameras("late-camera", f"rtsp://127.0.0.1:{port}/test")
    status = program.wait_status(lambda s: s["state"] == "reconnecting" and s["reconnects"] >= 2, 6,
                                 "retries of an absent camera")
    assert "Connection refused" in status["last_error"] or "ConnectionRefused" in status["last_error"]
    assert program.process.alive()
    servers(RtspCamera(tmp_path, port=port, fps=FPS))
    back = time.monotonic()
    program.wait_state("streaming", 2.5)
    assert time.monotonic() - back <= 2.5
    assert program.process.alive()


def test_hung_camera_is_noticed_within_the_read_timeout(tmp_path, servers, cameras):
    camera = servers(RtspCamera(tmp_path, fps=FPS))
    program = cameras("hung", camera.url(), EDGEPROXY_READ_TIMEOUT_S="2", EDGEPROXY_OPEN_TIMEOUT_S="2",
                      EDGEPROXY_BACKOFF_MAX_S="2")
    program.wait_state("streaming", 10)
    camera.process.signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        status = program.wait_state("reconnecting", 6)
        assert time.monotonic() - stopped < 5
        assert "timed out" in status["last_error"], status
    finally:
        camera.process.signal(signal.SIGCONT)
    program.wait_state("streaming", 8)


def test_a_session_without_packets_is_ended_by_the_watchdog(tmp_path, servers, redis_server):
    """While packets flow, reads have no PyAV timeout (its interrupt callback takes the GIL at every
    FFmpeg I/O check); the watchdog ends a session that got no packet for the read timeout. Here
    FFmpeg's socket timeout is 30 s, so only the watchdog can end the stalled session in time."""
    import dataclasses
    import threading

    from worker.camera.config import Config
    from worker.camera.ingest import Ingest
    from worker.camera.state import CameraState

    camera = servers(RtspCamera(tmp_path, fps=FPS))
    cfg = Config(name="stall", rtsp_url=camera.url(), redis_url=redis_server.url, read_timeout=30.0,
                 backoff_initial=30.0, backoff_max=30.0)
    state, stop = CameraState(cfg.name), threading.Event()
    ingest = Ingest(cfg, state, redis_server.client(), stop)
    thread = threading.Thread(target=ingest.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: state.state == "streaming" and state.packets > FPS, 10, message="streaming")
        assert not ingest.end_stalled_session(time.monotonic())  # packets flow: left alone
        ingest.cfg = dataclasses.replace(cfg, read_timeout=1.0)
        camera.process.signal(signal.SIGSTOP)
        try:
            stalled = time.monotonic()
            # as the watchdog: once a second
            wait_until(lambda: ingest.end_stalled_session(time.monotonic()), 3, interval=1.0, message="stall seen")
            wait_until(lambda: state.state == "reconnecting", 2, interval=0.05, message="the session ended")
            assert time.monotonic() - stalled < 4  # not FFmpeg's socket timeout (30 s)
            assert "timed out" in state.last_error, state.last_error
            assert state.reconnects == 0 and camera.process.alive()
        finally:
            camera.process.signal(signal.SIGCONT)
    finally:
        stop.set()
        thread.join(5)


# --------------------------------------------------------------------------- frames on demand


def test_frames_are_decoded_only_on_demand_newest_first_and_correct(tmp_path, servers, cameras):
    gop = 4 * FPS  # a 4 s GOP: waiting for the next keyframe would be slow, catching up is not
    camera = servers(RtspCamera(tmp_path, fps=FPS, gop=gop))
    program = cameras("frames", camera.url())
    program.wait_state("streaming", 10)

    time.sleep(1.5)  # nobody wants frames: nothing is decoded or published
    status = program.status()
    assert status["packets"] > 25 and status["decoded_frames"] == 0 and status["demand"] == "none"
    assert program.frame("latest") is None and program.frame("keyframe") is None

    asked = time.monotonic()
    program.want("all")
    first = wait_until(lambda: program.frame("latest"), 1.0, interval=0.02, message="first frame")
    first_at = time.monotonic() - asked
    meta, data = first
    # the decoder's planar YUV 4:2:0 as is (no conversion in the camera); readers convert
    assert meta["data_format"] == "i420" and meta["pix_fmt"] == "yuv420p" and len(data) == 640 * 480 * 3 // 2
    image = to_bgr(meta, data)
    assert first_at < 1.0
    assert abs(meta["ts"] - time.time() * 1000) < 1000  # the newest frame, not the GOP's old keyframe
    assert meta["is_corrupt"] is False
    assert_ball_on_black(image)

    reads = consume(program, "all", 2.5)
    assert len(reads) > 20
    seqs = [m["seq"] for _, m, _ in reads]
    stamps = [m["ts"] for _, m, _ in reads]
    assert seqs == sorted(seqs) and stamps == sorted(stamps), "a read went back in time"
    assert len(set(seqs)) > 25
    for _, m, size in reads:
        assert (m["width"], m["height"]) == (640, 480) and size == 640 * 480 * 3 // 2 and m["data_format"] == "i420"
        assert m["codec_name"] == "h264"
    # The rate over the camera's own clock: frames published between two of its status reports.
    before = program.status()

    def two_seconds_published(status: dict) -> bool:
        program.want("all")  # the consumer stays
        return status["published_frames"] - before["published_frames"] >= 2 * FPS

    after = program.wait_status(two_seconds_published, 8, "two seconds of frames published")
    seconds = (after["updated_at"] - before["updated_at"]) / 1000
    rate = (after["published_frames"] - before["published_frames"]) / seconds
    assert abs(rate - FPS) <= FPS * 0.15, rate
    assert program.redis.pttl(keys.frame_latest(program.name)) > 0

    # the consumer leaves: decoding stops once its demand expires
    program.redis.delete(keys.demand_all(program.name))
    time.sleep(0.6)
    decoded = program.status()["decoded_frames"]
    time.sleep(1.0)
    assert program.status()["decoded_frames"] == decoded
    assert program.status()["demand"] == "none"


def assert_ball_on_black(image: np.ndarray) -> None:
    """The test camera's ``ball`` pattern: a white ball on black, as a BGR24 image."""
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert image.mean() < 30  # mostly black
    gray = image.min(axis=2)
    white = gray > 200
    assert 200 < white.sum() < 640 * 480 // 10  # a ball: some white pixels, not a white picture
    ys, xs = np.nonzero(white)
    assert np.ptp(ys) < 160 and np.ptp(xs) < 160  # in one place
    # no colour cast (a wrong conversion tints it): the ball is white, the background black
    ball = image[white].astype(int)
    assert np.abs(ball - ball.mean(axis=1, keepdims=True)).max() < 40
    assert np.percentile(image, 50) < 20


def test_bgr24_publish_format_for_compatibility(tmp_path, servers, cameras):
    camera = servers(RtspCamera(tmp_path, fps=FPS, gop=FPS))
    program = cameras("bgr-publish", camera.url(), EDGEPROXY_PUBLISH_FORMAT="bgr24")
    program.wait_state("streaming", 10)
    program.want("all")
    meta, data = wait_until(lambda: program.frame("latest"), 3.0, interval=0.02, message="first frame")
    assert meta["data_format"] == "bgr24" and meta["pix_fmt"] == "yuv420p" and len(data) == 640 * 480 * 3
    assert_ball_on_black(np.frombuffer(data, np.uint8).reshape(480, 640, 3))


def test_keyframes_only_demand_decodes_only_keyframes(tmp_path, servers, cameras):
    gop = 12  # a keyframe every 0.48 s
    camera = servers(RtspCamera(tmp_path, fps=FPS, gop=gop))
    program = cameras("keyframes", camera.url())
    program.wait_state("streaming", 10)
    reads = consume(program, "key", 1.0, which="keyframe")
    before = program.status()
    reads += consume(program, "key", 3.0, which="keyframe")
    after = program.status()
    assert reads, "no keyframe published"
    for _, meta, size in reads:
        assert meta["is_keyframe"] is True and meta["frame_type"] == "I"
        assert size == data_size(meta) == 640 * 480 * 3 // 2
    seconds = (after["updated_at"] - before["updated_at"]) / 1000
    decoded_rate = (after["decoded_frames"] - before["decoded_frames"]) / seconds
    assert abs(decoded_rate - FPS / gop) <= 0.3 * FPS / gop, decoded_rate  # ~1/GOP of the frames
    assert (after["decoded_keyframes"] - before["decoded_keyframes"]
            == after["decoded_frames"] - before["decoded_frames"])
    latest = program.frame("latest")
    assert latest is not None and latest[0]["is_keyframe"] is True
    assert after["demand"] == "keyframes"


# --------------------------------------------------------------------------- packet ring


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_ring_holds_the_configured_seconds_and_decode_range_returns_every_frame(tmp_path, servers, cameras, codec):
    buffer_s = 3
    camera = servers(RtspCamera(tmp_path, fps=FPS, gop=FPS, codec=codec))
    program = cameras(f"ring-{codec}", camera.url(), EDGEPROXY_BUFFER_SECONDS=str(buffer_s))
    program.wait_state("streaming", 10)
    wait_packets(program, buffer_s + 2.5, "more than the buffer's packets")  # the ring has been trimmed
    r = program.redis
    ring = keys.ring(program.name)

    entries = r.xrange(ring)
    first_id, first = entries[0]
    last_id, _ = entries[-1]
    first_ms, last_ms = int(first_id.split(b"-")[0]), int(last_id.split(b"-")[0])
    span = (last_ms - first_ms) / 1000
    assert first[b"key"] == b"1", "the ring must start at a keyframe"
    assert buffer_s - 0.2 <= span <= buffer_s + 1.2, span  # buffer, plus at most one GOP
    ids = [int(e[0].split(b"-")[0]) for e in entries]
    assert ids == sorted(ids) and all(int(f[b"ts"]) == i for i, (_, f) in zip(ids, entries, strict=True))
    info = ring_info(r, program.name)
    assert info["frames"] >= len(entries) and abs(info["fps"] - FPS) < 3

    # a range starting mid-GOP, 2 s back: every packet received in it comes back decoded, in order
    start = last_ms - 2000 + 300
    end = start + 1500
    expected = [int(f[b"ts"]) for _, f in r.xrange(ring, str(start), str(end))]
    frames = list(decode_range(r, program.name, start, end))
    assert [m["ts"] for m, _ in frames] == expected
    assert len(frames) >= 1.5 * FPS * 0.9
    assert [m["seq"] for m, _ in frames] == list(range(1, len(frames) + 1))
    for meta, image in frames:
        assert image.shape == (480, 640, 3) and image.dtype == np.uint8
        assert meta["is_corrupt"] is False and image.mean() < 30
    # and the status says how much is buffered
    status = program.status()
    assert status["ring_entries"] > 0 and status["ring_span_ms"] >= (buffer_s - 0.2) * 1000


# --------------------------------------------------------------------------- RTMP


def _listening(port: int) -> bool:
    """Is a TCP socket listening on port (without connecting: ffmpeg -listen takes one client)?"""
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                return True
    return False


def _rtmp_receiver(tmp_path, port: int, out_name: str) -> Process:
    receiver = Process(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-listen", "1", "-f", "flv",
                        "-i", f"rtmp://127.0.0.1:{port}/live/test", "-c", "copy", "-f", "flv",
                        str(tmp_path / out_name)], tmp_path / f"{out_name}.log")
    wait_until(lambda: _listening(port), 10, message="rtmp receiver listening")
    return receiver


def _probe(path) -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                             "stream=codec_name,profile,width,height,nb_read_packets", "-of", "json", str(path)],
                            capture_output=True, text=True, timeout=30)
    return json.loads(result.stdout)["streams"][0]


def test_rtmp_pass_through_reaches_a_receiver_and_follows_the_switch(tmp_path, servers, cameras):
    camera = servers(RtspCamera(tmp_path, fps=FPS))
    port = free_port()
    receiver = servers(_rtmp_receiver(tmp_path, port, "first.flv"))
    program = cameras("rtmp", camera.url(), EDGEPROXY_RTMP_URL=f"rtmp://127.0.0.1:{port}/live/test")

    # no rtmp key: on, because an RTMP URL is configured
    program.wait_status(lambda s: s["rtmp_streaming"] is True, 10, "rtmp streaming")
    time.sleep(2.0)
    program.redis.set(keys.rtmp_switch(program.name), "0")
    program.wait_status(lambda s: s["rtmp_streaming"] is False and s["rtmp_enabled"] is False, 3, "rtmp off")
    wait_until(lambda: not receiver.alive(), 5, message="the receiver sees the end of the stream")
    first = _probe(tmp_path / "first.flv")
    assert (first["codec_name"], first["width"], first["height"]) == ("h264", 640, 480)
    assert "Baseline" in first["profile"]  # the camera's own bitstream, not a re-encode
    assert int(first["nb_read_packets"]) >= 2 * FPS

    # switched on again at run time, to a new receiver on the same address
    receiver2 = servers(_rtmp_receiver(tmp_path, port, "second.flv"))
    time.sleep(1.0)
    assert program.status()["rtmp_streaming"] is False  # off means off
    program.redis.set(keys.rtmp_switch(program.name), "1")
    program.wait_status(lambda s: s["rtmp_streaming"] is True, 5, "rtmp on again")
    time.sleep(1.5)
    program.redis.set(keys.rtmp_switch(program.name), "0")
    wait_until(lambda: not receiver2.alive(), 5, message="second receiver ends")
    second = _probe(tmp_path / "second.flv")
    assert (second["codec_name"], second["width"], second["height"]) == ("h264", 640, 480)
    assert int(second["nb_read_packets"]) >= FPS
    assert program.status()["state"] == "streaming"  # ingest never noticed any of it
    assert program.status()["reconnects"] == 0


def test_rtmp_receiver_down_never_hurts_ingest(tmp_path, servers, cameras):
    camera = servers(RtspCamera(tmp_path, fps=FPS))
    port = free_port()  # nothing listens there
    program = cameras("rtmp-down", camera.url(), EDGEPROXY_RTMP_URL=f"rtmp://127.0.0.1:{port}/live/test")
    program.wait_state("streaming", 10)
    status = wait_fps_window(program)
    assert status["state"] == "streaming" and abs(status["fps"] - FPS) <= FPS * 0.1
    assert status["rtmp_enabled"] is True and status["rtmp_streaming"] is False
    assert status["rtmp_error"]
    assert "rtmp: cannot connect to" in program.output()


# --------------------------------------------------------------------------- stopping


def test_sigterm_stops_within_two_seconds_with_code_zero(tmp_path, servers, cameras):
    camera = servers(RtspCamera(tmp_path, fps=FPS))
    program = cameras("sigterm", camera.url())
    program.wait_state("streaming", 10)
    program.want("all")
    time.sleep(0.5)
    sent = time.monotonic()
    program.process.signal(signal.SIGTERM)
    code = program.process.popen.wait(5)
    assert time.monotonic() - sent < 2.0
    assert code == 0
    assert program.status() is None  # a stopped camera leaves no status behind
    assert "stopped" in program.output()


def test_sigterm_while_blocked_opening_a_silent_camera(tmp_path, cameras):
    # A server that accepts TCP connections and never answers: the RTSP open blocks in FFmpeg.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        program = cameras("silent", f"rtsp://127.0.0.1:{port}/x", EDGEPROXY_OPEN_TIMEOUT_S="30")
        program.wait_state("connecting", 10)
        time.sleep(1.0)
        sent = time.monotonic()
        program.process.signal(signal.SIGTERM)
        code = program.process.popen.wait(5)
        assert time.monotonic() - sent < 2.0
        assert code == 0
    finally:
        silent.close()


# --------------------------------------------------------------------------- frame bus outage


def test_frame_bus_outage_does_not_stop_the_camera(tmp_path, servers):
    from tests.support.services import RedisServer
    from tests.worker.camera.conftest import CameraProgram

    bus = servers(RedisServer(tmp_path / "bus"))
    camera = servers(RtspCamera(tmp_path, fps=FPS))
    program = servers(CameraProgram(tmp_path, bus, "bus-outage", camera.url(), EDGEPROXY_BUFFER_SECONDS="2"))
    program.wait_state("streaming", 10)
    pid = program.pid

    bus.stop()
    time.sleep(2.5)
    assert program.process.alive()
    bus.start()  # same port, empty
    program.redis = bus.client()
    status = program.wait_status(lambda s: s["state"] == "streaming", 5, "status back")
    assert status["pid"] == pid and status["reconnects"] == 0  # the camera side never dropped
    wait_until(lambda: program.redis.exists(keys.codec(program.name)), 7, message="codec info rewritten")
    first = wait_until(lambda: program.redis.xrange(keys.ring(program.name), count=1), 3, message="ring again")
    assert first[0][1][b"key"] == b"1"  # the ring resumes at a keyframe
    reads = consume(program, "all", 1.5)
    assert reads and reads[-1][2] == data_size(reads[-1][1]) == 640 * 480 * 3 // 2
    output = program.output()
    assert "frame bus unreachable" in output and "frame bus reachable again" in output


def test_udp_transport_per_camera(tmp_path, servers, cameras):
    camera = servers(RtspCamera(tmp_path, fps=FPS))
    program = cameras("udp", camera.url(), EDGEPROXY_RTSP_TRANSPORT="udp")
    program.wait_state("streaming", 10)
    status = wait_fps_window(program)
    assert status["transport"] == "udp" and status["state"] == "streaming"
    assert abs(status["fps"] - FPS) <= FPS * 0.10, status
    assert "over udp" in program.output()
