"""Recorded footage of this host's cameras over gRPC: service ``edgeproxy.recordings.v1.Recordings``.

The control plane fetches listings and bytes here, as it fetches ``frame.jpg`` from the frame
API: same server, port, API keys (``TokenAuthInterceptor``) and TLS. Requests are one JSON object
(UTF-8 bytes), no ``.proto`` needed; answers are JSON (``List``) or a stream of raw MP4 chunks.

* ``List`` ``{"camera", "from", "to"}`` -> ``{"segments": [{file, start, end, duration_ms, size, codec}]}``
* ``Segment`` ``{"camera", "file"}`` -> the segment file's bytes, in chunks
* ``Clip`` ``{"camera", "from", "to"}`` -> one fragmented MP4 from the keyframe at or before
  ``from`` to ``to`` (remuxed, never re-encoded), in chunks as it is made

Errors: ``NOT_FOUND`` (no such segment, no footage in the range), ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import json
import logging

import grpc

from edgeproxy.contracts.names import EDGE_NAME_RULE
from worker import recordings
from worker.camera import keys

log = logging.getLogger("edgeproxy.frames")

SERVICE_NAME = "edgeproxy.recordings.v1.Recordings"
CHUNK = 256 * 1024


class _Request:
    def __init__(self, data: bytes):
        try:
            value = json.loads(data or b"{}")
        except ValueError:
            value = None
        self.value = value if isinstance(value, dict) else None


def _camera(request: _Request, context) -> str:
    value = request.value
    if value is None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request must be a JSON object")
    name = str((value or {}).get("camera") or "")
    if not EDGE_NAME_RULE.fullmatch(name):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "camera: not a camera name")
    return name


def _range(request: _Request, context) -> tuple[int, int]:
    value = request.value or {}
    start, end = value.get("from"), value.get("to")
    if not isinstance(start, int) or not isinstance(end, int) or end < start:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "from and to: integer ms, from <= to")
        raise AssertionError("abort raises")
    return start, end


class RecordingsServicer:
    def __init__(self, settings: recordings.HostRecordingSettings):
        self.settings = settings

    def list(self, request: _Request, context) -> dict:
        camera = _camera(request, context)
        start, end = _range(request, context)
        return {"segments": recordings.list_footage(self.settings, camera, start, end)}

    def segment(self, request: _Request, context):
        camera = _camera(request, context)
        try:
            path = recordings.segment_path(self.settings, camera, str((request.value or {}).get("file") or ""))
        except recordings.FootageError as exc:
            code = grpc.StatusCode.NOT_FOUND if exc.code == "not_found" else grpc.StatusCode.INVALID_ARGUMENT
            context.abort(code, str(exc))
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
        except FileNotFoundError:
            context.abort(grpc.StatusCode.NOT_FOUND, "the segment was deleted meanwhile")

    def clip(self, request: _Request, context):
        camera = _camera(request, context)
        start, end = _range(request, context)
        end = min(end, start + self.settings.clip_max_s * 1000)  # at most EDGEPROXY_RECORDING_CLIP_MAX_SECONDS
        try:
            yield from recordings.clip(self.settings, camera, start, end)
        except recordings.FootageError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))

    def keep_event(self, redis_client, camera: str, start_ms: int, end_ms: int | None) -> None:
        """Keep the footage around an annotation of a recording camera (``Annotate``)."""
        if not self.settings.directory:
            return
        try:
            control = json.loads(redis_client.get(keys.recording(camera)) or b"{}")
            if isinstance(control, dict) and control.get("enabled"):
                recordings.keep_event(self.settings, camera, start_ms, end_ms)
        except Exception as exc:  # noqa: BLE001 - the annotation itself is recorded either way
            log.warning("Annotate: footage of camera %s around the event not kept: %s", camera, exc)


def add_recordings(server: grpc.Server, servicer: RecordingsServicer) -> None:
    def encode(value) -> bytes:
        return value if isinstance(value, bytes) else json.dumps(value).encode()

    handlers = {
        "List": grpc.unary_unary_rpc_method_handler(servicer.list, request_deserializer=_Request,
                                                    response_serializer=encode),
        "Segment": grpc.unary_stream_rpc_method_handler(servicer.segment, request_deserializer=_Request,
                                                        response_serializer=encode),
        "Clip": grpc.unary_stream_rpc_method_handler(servicer.clip, request_deserializer=_Request,
                                                     response_serializer=encode),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
