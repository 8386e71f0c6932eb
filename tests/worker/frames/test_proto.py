"""Wire compatibility of the frame API with the original service, and committed generated code
that matches the .proto."""

from __future__ import annotations

import shutil

import pytest
from google.protobuf.descriptor import FieldDescriptor as F

from worker.frames.proto import regenerate
from worker.frames.proto import video_streaming_pb2 as pb

# The original's messages (reference/original-system.md 5.1): name -> {field: (number, type)}.
S, I64, I32, B = F.TYPE_STRING, F.TYPE_INT64, F.TYPE_INT32, F.TYPE_BOOL
BY, D, M = F.TYPE_BYTES, F.TYPE_DOUBLE, F.TYPE_MESSAGE
ORIGINAL = {
    "VideoFrameRequest": {"key_frame_only": (1, B), "device_id": (2, S)},
    "VideoFrameBufferedRequest": {"device_id": (1, S), "timestamp_from": (2, I64), "timestamp_to": (3, I64)},
    "VideoFrame": {"width": (1, I64), "height": (2, I64), "data": (3, BY), "timestamp": (4, I64),
                   "is_keyframe": (5, B), "pts": (6, I64), "dts": (7, I64), "frame_type": (8, S),
                   "is_corrupt": (9, B), "time_base": (10, D), "shape": (11, M), "device_id": (12, S),
                   "packet": (13, I64), "keyframe": (14, I64), "extradata": (15, BY), "codec_name": (16, S),
                   "pix_fmt": (17, S)},
    "ShapeProto": {"dim": (2, M)},
    "ShapeProto.Dim": {"size": (1, I64), "name": (2, S)},
    "ListStreamRequest": {},
    "ListStream": {"name": (1, S), "status": (2, S), "failing_streak": (3, I64), "health_status": (4, S),
                   "dead": (5, B), "exit_code": (6, I64), "pid": (7, I32), "running": (8, B), "paused": (9, B),
                   "restarting": (10, B), "oomkilled": (11, B), "error": (12, S)},
    "ProxyRequest": {"device_id": (1, S), "passthrough": (2, B)},
    "ProxyResponse": {"device_id": (1, S), "passthrough": (2, B)},
    "StorageRequest": {"device_id": (1, S), "start": (2, B)},
    "StorageResponse": {"device_id": (1, S), "start": (2, B)},
    "VideoProbeRequest": {"device_id": (1, S)},
    "VideoProbeResponse": {"video_codec": (1, M), "buffer": (2, M)},
    "VideoCodec": {"name": (1, S), "width": (2, I32), "height": (3, I32), "pix_fmt": (4, S), "extradata": (5, BY),
                   "extradata_size": (6, I32), "long_name": (7, S)},
    "VideoBuffer": {"start_time": (1, I64), "end_time": (2, I64), "duration_seconds": (3, I64),
                    "approximate_fps": (4, I32), "frames": (5, I64)},
    "SystemTimeRequest": {},
    "SystemTimeResponse": {"current_time": (1, I64)},
    "AnnotateRequest": {
        "device_name": (1, S), "remote_stream_id": (2, S), "type": (3, S), "start_timestamp": (4, I64),
        "end_timestamp": (5, I64), "object_type": (6, S), "object_id": (7, S), "object_tracking_id": (8, S),
        "confidence": (9, D), "object_bouding_box": (10, M), "location": (11, M), "object_coordinate": (12, M),
        "mask": (13, M), "object_signature": (14, D), "ml_model": (15, S), "ml_model_version": (16, S),
        "width": (17, I32), "height": (18, I32), "is_keyframe": (19, B), "video_type": (20, S),
        "offset_timestamp": (21, I64), "offset_duration": (22, I64), "offset_frame_id": (23, I64),
        "offset_packet_id": (24, I64), **{f"custom_meta_{i}": (24 + i, S) for i in range(1, 6)}},
    "AnnotateResponse": {"device_name": (1, S), "remote_stream_id": (2, S), "type": (3, S),
                         "start_timestamp": (4, I64)},
    "BoudingBox": {"top": (1, I32), "left": (2, I32), "width": (3, I32), "height": (4, I32)},
    "Location": {"lat": (1, D), "lon": (2, D)},
    "Coordinate": {"x": (1, D), "y": (2, D), "z": (3, D)},
}
REPEATED = {("ShapeProto", "dim"), ("AnnotateRequest", "mask"), ("AnnotateRequest", "object_signature")}
RPCS = {  # name: (request, response, server streaming)
    "VideoLatestImage": ("VideoFrameRequest", "VideoFrame", False),
    "VideoBufferedImage": ("VideoFrameBufferedRequest", "VideoFrame", True),
    "VideoProbe": ("VideoProbeRequest", "VideoProbeResponse", False),
    "ListStreams": ("ListStreamRequest", "ListStream", True),
    "Annotate": ("AnnotateRequest", "AnnotateResponse", False),
    "Proxy": ("ProxyRequest", "ProxyResponse", False),
    "Storage": ("StorageRequest", "StorageResponse", False),
    "SystemTime": ("SystemTimeRequest", "SystemTimeResponse", False),
}


def _message(path: str):
    descriptor = pb.DESCRIPTOR.message_types_by_name[path.split(".")[0]]
    for part in path.split(".")[1:]:
        descriptor = descriptor.nested_types_by_name[part]
    return descriptor


@pytest.mark.parametrize("message", sorted(ORIGINAL))
def test_messages_match_the_original_wire_format(message):
    descriptor = _message(message)
    ours = {f.name: (f.number, f.type) for f in descriptor.fields}
    assert ours == ORIGINAL[message]
    for field in descriptor.fields:
        assert field.is_repeated == ((message, field.name) in REPEATED), field.name


def test_service_matches_the_original():
    assert pb.DESCRIPTOR.package == "chrys.cloud.videostreaming.v1beta1"
    service = pb.DESCRIPTOR.services_by_name["Image"]
    assert service.full_name == "chrys.cloud.videostreaming.v1beta1.Image"
    ours = {m.name: (m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods}
    assert ours == RPCS
    assert not any(m.client_streaming for m in service.methods)


def test_committed_code_is_generated_from_the_proto(tmp_path):
    """The committed _pb2 modules are what ``python -m worker.frames.proto.regenerate`` makes."""
    from grpc_tools import protoc

    shutil.copy(regenerate.HERE / regenerate.PROTO, tmp_path / regenerate.PROTO)
    code = protoc.main(["grpc_tools.protoc", f"-I{tmp_path}", f"--python_out={tmp_path}",
                        f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", str(tmp_path / regenerate.PROTO)])
    assert code == 0
    regenerate.fix_imports(tmp_path / "video_streaming_pb2_grpc.py")
    for name in ("video_streaming_pb2.py", "video_streaming_pb2_grpc.py", "video_streaming_pb2.pyi"):
        assert (tmp_path / name).read_text() == (regenerate.HERE / name).read_text(), (
            f"{name} is out of date: run .venv/bin/python -m worker.frames.proto.regenerate")


def test_client_imports_without_django():
    import subprocess
    import sys

    code = ("import sys, edgeproxy.client, worker.frames.server; "
            "assert 'django' not in sys.modules, 'django imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_client_takes_the_pixels_from_the_reply_without_parsing_them():
    """``split_frame`` finds ``data`` in a serialized VideoFrame whatever the field order (the
    original's serializer puts it third, this server last), keeps every other field, and refuses
    a truncated message."""
    from edgeproxy.client import split_frame
    from worker.frames import convert

    pixels = bytes(range(256)) * 3 * 2  # 32 x 16 x 3
    fields = dict(width=32, height=16, timestamp=1_700_000_000_123, is_keyframe=True, pts=-5, dts=-7,
                  frame_type="I", time_base=1 / 90000, shape=convert.shape(16, 32), device_id="cam",
                  extradata=b"\x00\x01", codec_name="h264", pix_fmt="yuv420p")
    expected = pb.VideoFrame(**fields)
    original = pb.VideoFrame(data=pixels, **fields).SerializeToString()
    data_last = expected.SerializeToString() + b"\x1a" + b"\x80\x0c" + pixels
    repeated = pb.VideoFrame(data=b"old").SerializeToString() + original  # proto3: the last one wins
    for raw in (original, data_last, repeated):
        frame, offset, size = split_frame(raw)
        assert frame == expected
        assert raw[offset:offset + size] == pixels
    with pytest.raises(ValueError):
        split_frame(original[:40])
