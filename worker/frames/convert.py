"""Turning frame-bus records into protobuf messages (and annotations into JSON-able dicts)."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from worker.camera import frame_format
from worker.frames.proto import video_streaming_pb2 as pb


def parse_json(raw) -> dict | None:
    """A JSON object from a Redis value, or None if missing or not an object."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _int(value, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def time_base_value(value) -> float:
    """``time_base`` as a float; accepts a number or a ``"1/90000"`` string."""
    if isinstance(value, str) and "/" in value:
        num, _, den = value.partition("/")
        den_f = _float(den)
        return _float(num) / den_f if den_f else 0.0
    return _float(value)


# AVPictureType numbers, should a publisher write the number instead of the letter.
_PICT_TYPES = {"1": "I", "2": "P", "3": "B", "4": "S", "5": "SI", "6": "SP", "7": "BI"}


def frame_type_letter(value) -> str:
    text = str(value or "")
    return _PICT_TYPES.get(text, text)


def shape(height: int, width: int, channels: int = 3) -> pb.ShapeProto:
    return pb.ShapeProto(
        dim=[
            pb.ShapeProto.Dim(size=height, name="0"),
            pb.ShapeProto.Dim(size=width, name="1"),
            pb.ShapeProto.Dim(size=channels, name="2"),
        ]
    )


def _frame_fields(device_id: str, meta: dict) -> dict:
    """Every ``VideoFrame`` field but ``data``, from a frame meta record (``keys.FRAME_META_FIELDS``)."""
    width = _int(meta.get("width"))
    height = _int(meta.get("height"))
    return dict(
        width=width,
        height=height,
        timestamp=_int(meta.get("ts")),
        is_keyframe=bool(meta.get("is_keyframe")),
        pts=_int(meta.get("pts")),
        dts=_int(meta.get("dts")),
        frame_type=frame_type_letter(meta.get("frame_type")),
        is_corrupt=bool(meta.get("is_corrupt")),
        time_base=time_base_value(meta.get("time_base")),
        shape=shape(height, width),
        device_id=device_id,
        packet=_int(meta.get("packet")),
        keyframe=_int(meta.get("keyframe")),
        codec_name=str(meta.get("codec_name") or ""),
        pix_fmt=str(meta.get("pix_fmt") or ""),
    )


def video_frame(device_id: str, meta: dict, data: bytes) -> pb.VideoFrame:
    """A ``VideoFrame`` (``data`` always BGR24, as the original served) from a frame meta record
    (``keys.FRAME_META_FIELDS``) and its data in ``meta.data_format`` (absent: BGR24; ``i420`` is
    converted here, see ``worker.camera.frame_format``; raises ``FrameFormatError`` if it does not
    fit the meta)."""
    return pb.VideoFrame(data=frame_format.bgr_bytes(meta, data), **_frame_fields(device_id, meta))


def video_frame_head(device_id: str, meta: dict) -> bytes:
    """A serialized ``VideoFrame`` without ``data``: append field 3 (tag ``0x1a``, length, BGR24
    bytes) to get the whole message without building it around a copy of the pixels."""
    return pb.VideoFrame(**_frame_fields(device_id, meta)).SerializeToString()


def video_codec(codec: dict | None) -> pb.VideoCodec:
    """``VideoCodec`` from the camera's ``codec`` record (extradata is base64 there)."""
    if not codec:
        return pb.VideoCodec()
    extradata = b""
    raw = codec.get("extradata")
    if raw:
        try:
            extradata = base64.b64decode(raw)
        except (ValueError, TypeError):
            extradata = b""
    return pb.VideoCodec(
        name=str(codec.get("name") or ""),
        width=_int(codec.get("width")),
        height=_int(codec.get("height")),
        pix_fmt=str(codec.get("pix_fmt") or ""),
        extradata=extradata,
        extradata_size=len(extradata),
        long_name=str(codec.get("long_name") or ""),
    )


def stream_id_ms(entry_id) -> int:
    """Milliseconds part of a Redis stream entry id (``b"1700000000000-0"``)."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    return _int(str(entry_id).split("-", 1)[0])


def video_buffer(frames: int, first_id, last_id) -> pb.VideoBuffer:
    """Buffer span from the ring's length and first/last entry ids. Never divides by zero."""
    start = stream_id_ms(first_id)
    end = stream_id_ms(last_id)
    span_ms = max(0, end - start)
    # n packets spanning span_ms: (n - 1) intervals. Below 1 interval there is no rate to give.
    fps = round((frames - 1) * 1000 / span_ms) if span_ms > 0 and frames > 1 else 0
    return pb.VideoBuffer(
        start_time=start,
        end_time=end,
        duration_seconds=span_ms // 1000,
        approximate_fps=min(fps, 2**31 - 1),
        frames=frames,
    )


def list_stream(name: str, entry: dict) -> pb.ListStream:
    """``ListStream`` from a host camera table entry (``state`` holds Docker ContainerState keys)."""
    state = entry.get("state")
    state = state if isinstance(state, dict) else {}
    health = state.get("Health")
    health = health if isinstance(health, dict) else {}
    return pb.ListStream(
        name=name,
        status=str(state.get("Status") or entry.get("status") or ""),
        failing_streak=_int(health.get("FailingStreak")),
        health_status=str(health.get("Status") or ""),
        dead=bool(state.get("Dead")),
        exit_code=_int(state.get("ExitCode")),
        pid=_int(state.get("Pid")),
        running=bool(state.get("Running")),
        paused=bool(state.get("Paused")),
        restarting=bool(state.get("Restarting")),
        oomkilled=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
    )


def _field_value(field, value):
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_dict(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def message_to_dict(message) -> dict:
    """Every field of a message by its proto name, ints as ints (unlike ``MessageToDict``).

    Unset sub-messages are ``None``, repeated fields lists, scalars their (possibly default) value.
    """
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.is_repeated:
            out[field.name] = [_field_value(field, item) for item in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            out[field.name] = message_to_dict(value) if message.HasField(field.name) else None
        else:
            out[field.name] = _field_value(field, value)
    return out
