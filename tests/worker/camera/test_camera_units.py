"""Small pieces of the camera program that can be checked without a camera."""

from __future__ import annotations

import json
import random

import pytest

from worker.camera import keys
from worker.camera.backoff import Backoff
from worker.camera.config import ConfigError, load_config
from worker.camera.errors import mask_rtmp
from worker.camera.ring import decode_range, ring_info


def test_backoff_doubles_from_half_a_second_to_a_30_second_cap_with_jitter():
    backoff = Backoff(0.5, 30.0, jitter=0.2, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    bases = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30]
    for delay, base in zip(delays, bases, strict=True):
        assert base * 0.8 <= delay <= min(30.0, base * 1.2)
    assert len({round(d, 6) for d in delays[6:]}) > 1, "no jitter at the cap"
    backoff.reset()
    assert backoff.next_delay() <= 0.6


def test_config_defaults_and_url_file(tmp_path):
    url_file = tmp_path / "url"
    url_file.write_text("rtsp://admin:pw@cam.local/stream1\n")
    cfg = load_config({"EDGEPROXY_CAMERA_NAME": "cam-1", "EDGEPROXY_RTSP_URL_FILE": str(url_file),
                       "EDGEPROXY_RTSP_URL": "rtsp://ignored/"})
    assert cfg.rtsp_url == "rtsp://admin:pw@cam.local/stream1"
    assert (cfg.transport, cfg.buffer_seconds, cfg.rtmp_url) == ("tcp", 10.0, None)
    assert cfg.rtsp_host_port == ("cam.local", 554)
    assert "pw" not in repr(cfg)
    with pytest.raises(ConfigError, match="EDGEPROXY_BUFFER_SECONDS must be between 0 and 3600"):
        load_config({"EDGEPROXY_CAMERA_NAME": "c", "EDGEPROXY_RTSP_URL": "rtsp://h/", "EDGEPROXY_BUFFER_SECONDS": "-1"})


def test_rtmp_stream_key_is_masked():
    assert mask_rtmp("rtmp://u:p@live.example/app/abcdef123456") == "rtmp://u:***@live.example/app/***"


def test_decode_range_needs_codec_info_and_an_empty_ring_yields_nothing(redis_server):
    client = redis_server.client()
    with pytest.raises(LookupError):
        next(decode_range(client, "never-connected", 0, 10**13))
    client.set(keys.codec("no-packets"), json.dumps({"name": "h264", "width": 640, "height": 480}))
    assert list(decode_range(client, "no-packets", 0, 10**13)) == []
    assert ring_info(client, "no-packets")["frames"] == 0


def _annex_b_h264(frames: int, brightness_step: int, b_frames: int = 0):
    """A small H.264 stream in MPEG-TS (Annex B, as from a camera), a GOP of 10, each frame a
    different grey, rewound for reading."""
    import io

    import av
    import numpy as np

    source = io.BytesIO()
    options = {"preset": "ultrafast", "g": "10", **({"bf": str(b_frames)} if b_frames else {})}
    with av.open(source, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * brightness_step, np.uint8), format="rgb24")
            frame.pts = i
            for packet in [*stream.encode(frame), *(stream.encode() if i == frames - 1 else [])]:
                out.mux(packet)
    source.seek(0)
    return source


def test_bgr24_straight_into_a_slot_is_the_same_as_pyav_and_a_copy():
    """The camera's direct conversion into its ring slot gives the bytes PyAV's converter gave
    (same swscale, options, colorspace and range), and leaves frames it does not take to PyAV."""
    import av
    import numpy as np
    from av.video.reformatter import VideoReformatter

    from worker.camera.ring import to_bgr24
    from worker.camera.swscale import SlotConverter

    converter, reformatter = SlotConverter(), VideoReformatter()
    rng = np.random.default_rng(7)
    for (height, width), colorspace, color_range in (((480, 640), 2, 0), ((1080, 1920), 1, 0), ((288, 352), 5, 2)):
        frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (height * 3 // 2, width), dtype=np.uint8),
                                           format="yuv420p")
        frame.colorspace, frame.color_range = colorspace, color_range
        slot = np.zeros((height, width, 3), np.uint8)
        assert converter.convert_into(frame, slot)
        assert np.array_equal(slot, to_bgr24(reformatter, frame))
    odd = av.VideoFrame.from_ndarray(np.zeros((240 * 3 // 2, 322), np.uint8), format="yuv420p")
    gray = av.VideoFrame.from_ndarray(np.zeros((48, 64), np.uint8), format="gray")
    for frame in (odd, gray):
        untouched = np.full((frame.height, frame.width, 3), 7, np.uint8)
        assert not converter.convert_into(frame, untouched) and (untouched == 7).all()
    converter.close()


def test_hand_written_fragments_read_back_as_written(tmp_path):
    """worker.camera.fmp4 (the recorder's fragments): H.264 with B-frames in Annex B (as RTSP sends
    it), its times in milliseconds while the track counts 1/90000: FFmpeg reads every packet back
    with its timestamps, keyframe flag and data (NAL units behind lengths) and decodes every frame."""
    from fractions import Fraction

    import av

    from worker.camera import fmp4

    source = _annex_b_h264(40, brightness_step=6, b_frames=2)
    with av.open(source, "r", format="mpegts") as demuxer:
        template = demuxer.streams.video[0]
        assert template.time_base == Fraction(1, 90000)
        header, track_id, timescale = fmp4.init_segment(template, "h264")
        packets = [(bytes(p), p.pts // 90, p.dts // 90, p.is_keyframe) for p in demuxer.demux(template) if p.size]
    assert timescale == 90000 and any(pts != dts for _data, pts, dts, _key in packets), "no B-frames to check"
    origin = packets[0][2]
    path = tmp_path / "fragments.mp4"
    with open(path, "wb") as file:
        file.write(header)
        writer = fmp4.FragmentWriter(file, track_id, timescale, Fraction(1, 1000), annex_b=True, origin=origin)
        for data, pts, dts, key in packets:
            writer.add(data, pts, dts, key, new_fragment=key)
        writer.finish(packets[-1][2] + 40)
    assert writer.sequence == 4 and path.stat().st_size == len(header) + writer.bytes

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        read = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in container.demux(stream) if p.size]
        container.seek(0)
        frames = list(container.decode(stream))
    assert stream.codec_context.name == "h264" and stream.time_base == Fraction(1, 90000)
    assert [(pts, dts, key) for _data, pts, dts, key in read] == [
        ((pts - origin) * 90, (dts - origin) * 90, key) for _data, pts, dts, key in packets]
    assert [data for data, *_ in read] == [fmp4.length_prefixed(data) for data, *_ in packets]
    assert len(frames) == 40


def test_recorder_thread_only_while_recording_and_a_stream_that_ends_loses_nothing(tmp_path):
    """worker.camera.recorder: no thread while recording is off; switched on, it writes what the
    ingest thread queues and, when the stream ends, every packet up to the last one is in closed
    segments that FFmpeg reads back as they were sent; switched off, the thread ends."""
    import threading

    import av

    from tests.support.services import wait_until
    from worker.camera import fmp4
    from worker.camera.recorder import Recorder, RecordingSettings, list_segments

    source = _annex_b_h264(60, brightness_step=4)
    stop = threading.Event()
    recorder = Recorder(RecordingSettings(directory=str(tmp_path), segment_s=1.0), "cam", None, stop)
    folder = tmp_path / "cam"
    wall = 1_700_000_000_000
    try:
        with av.open(source, "r", format="mpegts") as demuxer:
            template = demuxer.streams.video[0]
            packets = [(bytes(p), p.pts, p.dts, p.is_keyframe, p.duration) for p in demuxer.demux(template) if p.size]
            recorder.start()
            recorder.new_session(template)
            assert recorder.thread is None and not recorder.feeding, "a thread while recording is off"
            recorder.set_control({"enabled": True, "retention_hours": 1})
            thread = recorder.thread
            assert thread is not None and thread.is_alive() and recorder.feeding
        for data, pts, dts, key, duration in packets:
            recorder.feed(data, pts, dts, key, duration, wall + (pts - packets[0][1]) // 90)
        recorder.end_session()  # the stream ends right after its last packet
        wait_until(lambda: (found := list_segments(folder)) and all(s.end_ms for s in found), 10,
                   message="every packet in closed segments")
        recorder.set_control({"enabled": False})
        wait_until(lambda: recorder.thread is None and not thread.is_alive(), 5, message="recorder thread ended")
    finally:
        stop.set()
    segments = list_segments(folder)
    read = []
    for segment in segments:
        with av.open(str(segment.path)) as container:
            read += [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]
    assert read == [fmp4.length_prefixed(data) for data, *_ in packets], "packets lost or changed"
    assert len(segments) >= 2 and segments[0].start_ms == wall


def test_recording_on_where_the_host_cannot_record_shows_a_problem_until_switched_off():
    """worker.camera.recorder: no recordings directory on the host (EDGEPROXY_RECORDINGS_DIR unset):
    switched on, the camera says why it does not record; switched off again, the problem goes."""
    import threading

    from worker.camera.recorder import Recorder, RecordingSettings

    recorder = Recorder(RecordingSettings(directory=None), "cam", None, threading.Event())
    recorder.start()
    recorder.set_control({"enabled": True})
    status = recorder.status()
    assert status["state"] == "off" and "not available on this host" in status["problem"]
    recorder.set_control({"enabled": False})
    assert recorder.status()["problem"] is None
    assert recorder.thread is None
