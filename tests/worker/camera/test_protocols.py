"""FFmpeg opens only RTSP(S) for the camera and only RTMP(S) for the pass-through, whatever the URL.

The configuration already refuses other schemes; these check the opens themselves (the real
FFmpeg through PyAV), so that no later code path handing them another URL can read a file, fetch
over HTTP or write a file.
"""

from __future__ import annotations

import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np
import pytest

from tests.support.services import free_port
from worker.camera.config import Config, load_config
from worker.camera.ingest import Ingest
from worker.camera.rtmp import open_rtmp_output


def _media_file(path) -> None:
    """A real little MPEG-TS video that FFmpeg opens happily when allowed to."""
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _open(url: str):
    """The camera's own open (Ingest._open) of ``url``, as if some code path had handed it over."""
    cfg = Config(name="proto", rtsp_url=url, open_timeout=3, read_timeout=3)
    return Ingest._open(types.SimpleNamespace(cfg=cfg))


@pytest.fixture
def media(tmp_path):
    path = tmp_path / "clip.ts"
    _media_file(path)
    with av.open(str(path)) as container:  # the file itself is fine: FFmpeg reads it when not fenced in
        assert container.streams.video
    return path


@pytest.fixture
def http_server(media):
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            data = media.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/clip.ts", hits
    server.shutdown()
    server.server_close()


def test_the_camera_open_reads_no_file_and_no_other_protocol(media, http_server):
    url, hits = http_server
    for target in (f"file://{media}", str(media), url, f"subfile,,start,0,end,0,,:{media}",
                   f"concat:{media}|{media}"):
        with pytest.raises((av.error.FFmpegError, OSError, ValueError)):
            _open(target).close()
    assert hits == [], "FFmpeg fetched over HTTP"


def test_the_camera_open_still_reads_an_rtsp_camera(rtsp_camera):
    with _open(rtsp_camera.url()) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        packet = next(p for p in container.demux(video=0) if p.size)
        assert packet.size > 0


def test_upper_case_schemes_are_normalised_and_open(rtsp_camera):
    upper = "RTSP" + rtsp_camera.url()[len("rtsp"):]
    cfg = load_config({"EDGEPROXY_CAMERA_NAME": "upper", "EDGEPROXY_RTSP_URL": upper,
                       "EDGEPROXY_RTMP_URL": "RTMPS://live.example/app/key"})
    assert cfg.rtsp_url == rtsp_camera.url() and cfg.rtmp_url == "rtmps://live.example/app/key"
    with _open(cfg.rtsp_url) as container:
        assert container.streams.video


def test_the_rtmp_output_writes_no_file_and_opens_only_rtmp(tmp_path):
    target = tmp_path / "out.flv"
    for url in (f"file://{target}", str(target), f"http://127.0.0.1:{free_port()}/out.flv"):
        with pytest.raises(ValueError, match="rtmp:// or rtmps://"):
            open_rtmp_output(url, 1.0)
    assert not target.exists()
