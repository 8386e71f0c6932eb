"""The camera record (``StreamProcess``), its last operation, tasks, edge hosts and annotations as
the API answers them.

One definition of each, used for the answers and for the OpenAPI document (the views render with
them and declare them as their responses): ``StreamProcessSerializer``, ``OperationSerializer``,
``TaskSerializer``, ``EdgeHostSerializer``, ``AnnotationSerializer``.
``camera_list_json`` is the fast path of the full lists (``GET /processlist``, ``/processupgrades``)
for thousands of cameras: plain rows instead of model objects and fields. It answers the same
bytes as the serializer (``tests/processes/test_paged_lists.py`` compares them over the API).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from datetime import UTC, datetime
from json import encoder as json_encoder

from django.db.models import TextField
from django.db.models.functions import Cast
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField

from edgeproxy.contracts.statuses import CameraStatus
from edgeproxy.contracts.times import ms
from processes import live, recording_selectors, selectors
from processes.models import DesiredState, EdgeHost, OperationKind, OperationState
from worker.camera.keys import STATES as STREAM_STATES

PROCESS_STATUSES = tuple(status.value for status in CameraStatus)


class MillisecondsField(serializers.IntegerField):
    """A datetime as integer milliseconds since epoch."""

    def to_representation(self, value):
        return ms(value)


class NullIfBlankCharField(serializers.CharField):
    """A string, or null where the model stores an empty one."""

    def get_attribute(self, instance):
        return super().get_attribute(instance) or None


class OmittedIfBlankCharField(serializers.CharField):
    """A string left out of the answer where the model stores an empty one (optional URLs)."""

    def get_attribute(self, instance):
        value = super().get_attribute(instance)
        if not value:
            raise SkipField()
        return value


# --- the JSON the runtimes report, answered as stored; these describe it ------------------------


class ContainerStateSerializer(serializers.Serializer):
    Status = serializers.CharField(required=False)
    Running = serializers.BooleanField(required=False)
    Paused = serializers.BooleanField(required=False)
    Restarting = serializers.BooleanField(required=False)
    OOMKilled = serializers.BooleanField(required=False)
    Dead = serializers.BooleanField(required=False)
    Pid = serializers.IntegerField(required=False)
    ExitCode = serializers.IntegerField(required=False)
    Error = serializers.CharField(required=False, allow_null=True)
    StartedAt = serializers.CharField(required=False, help_text="RFC 3339")
    FinishedAt = serializers.CharField(required=False, help_text="RFC 3339")

    class Meta:
        ref_name = "ContainerState"


class ProcessLogsSerializer(serializers.Serializer):
    stdout = serializers.CharField(allow_null=True, help_text="base64, last 100 lines, passwords redacted")
    stderr = serializers.CharField(allow_null=True, help_text="base64, last 100 lines, passwords redacted")

    class Meta:
        ref_name = "ProcessLogs"


class RtmpStreamStatusSerializer(serializers.Serializer):
    streaming = serializers.BooleanField()
    storing = serializers.BooleanField()

    class Meta:
        ref_name = "RtmpStreamStatus"


class StreamStatusSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=list(STREAM_STATES), required=False)
    fps = serializers.FloatField(required=False, help_text="frames received per second (3 s window)")
    width = serializers.IntegerField(required=False, allow_null=True)
    height = serializers.IntegerField(required=False, allow_null=True)
    codec = serializers.CharField(required=False, allow_null=True)
    last_frame_at = serializers.IntegerField(required=False, allow_null=True, help_text="ms since epoch")
    reconnects = serializers.IntegerField(required=False)
    last_error = serializers.CharField(required=False, allow_null=True)

    class Meta:
        ref_name = "StreamStatus"


# --- the record ------------------------------------------------------------------------------


class OperationSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="also the Celery task id: GET /api/v1/tasks/{id}")
    kind = serializers.ChoiceField(choices=OperationKind.choices)
    state = serializers.ChoiceField(choices=OperationState.choices)
    error = NullIfBlankCharField(allow_null=True)
    created = MillisecondsField(help_text="ms since epoch")
    finished = MillisecondsField(allow_null=True, help_text="ms since epoch")

    class Meta:
        ref_name = "Operation"


def _shown_status(camera) -> str:
    return selectors.camera_status(camera, camera.host.is_online)


def _newer_version(field: serializers.Field, camera) -> str | None:
    """The camera host's newest local version of its image, if newer; one index per answer."""
    upgrades = field.context.get("upgrades")
    if upgrades is None:
        upgrades = selectors.UpgradeIndex()
        field.context["upgrades"] = upgrades
    return upgrades.newer_version(camera)


class _CameraFact(serializers.Field):
    """A value computed from the whole camera (``source="*"``), read only."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)


@extend_schema_field({"type": "string", "enum": list(PROCESS_STATUSES)})
class StatusField(_CameraFact):
    def to_representation(self, camera):
        return _shown_status(camera)


@extend_schema_field(ContainerStateSerializer)
class ContainerStateField(_CameraFact):
    def to_representation(self, camera):
        return camera.state or selectors.empty_state(_shown_status(camera))


@extend_schema_field(ProcessLogsSerializer)
class LogsField(_CameraFact):
    def to_representation(self, camera):
        logs = camera.logs or {}
        return {"stdout": logs.get("stdout"), "stderr": logs.get("stderr")}


@extend_schema_field(RtmpStreamStatusSerializer)
class RtmpStreamStatusField(_CameraFact):
    def to_representation(self, camera):
        return selectors.rtmp_stream_status(camera.stream, camera.storing)


@extend_schema_field(serializers.BooleanField())
class UpgradeAvailableField(_CameraFact):
    def to_representation(self, camera):
        return _newer_version(self, camera) is not None


@extend_schema_field(serializers.CharField())
class NewerVersionField(serializers.Field):
    """Left out of the answer when there is no newer version (so not read-only: optional in the schema)."""

    def __init__(self, **kwargs):
        super().__init__(source="*", required=False, **kwargs)

    def get_attribute(self, camera):
        newer = _newer_version(self, camera)
        if newer is None:
            raise SkipField()
        return newer

    def to_representation(self, value):
        return value


@extend_schema_field(StreamStatusSerializer(allow_null=True))
class StreamField(_CameraFact):
    def get_attribute(self, camera):
        return camera.stream or None

    def to_representation(self, value):
        return value


class StreamProcessListSerializer(serializers.ListSerializer):
    """A page of camera records: their live stream facts read from Redis in one round trip."""

    def to_representation(self, data):
        cameras = list(data.all() if hasattr(data, "all") else data)
        live.overlay(cameras)
        return super().to_representation(cameras)


class RecordingStatusSerializer(serializers.Serializer):
    """``recording`` of the camera record (issue 15): as wanted, and as the camera reports it."""

    enabled = serializers.BooleanField()
    retention_hours = serializers.FloatField(allow_null=True)
    state = serializers.ChoiceField(choices=recording_selectors.RECORDING_STATES)
    problem = serializers.CharField(allow_null=True, help_text="why recording stopped (quota, disk full, error)")
    bytes_written = serializers.IntegerField(help_text="by this camera process")
    segments = serializers.IntegerField()
    errors = serializers.IntegerField()
    retention_deleted = serializers.IntegerField()

    class Meta:
        ref_name = "RecordingStatus"


@extend_schema_field(RecordingStatusSerializer)
class RecordingField(_CameraFact):
    def to_representation(self, camera):
        return recording_selectors.recording_status(camera.recording, camera.stream)


class StreamProcessSerializer(serializers.Serializer):
    """The camera record of every route that answers a camera (``docs/api.md``)."""

    def to_representation(self, instance):
        live.overlay([instance])  # its newest stream facts (processes.live); a list has read them already
        return super().to_representation(instance)

    name = serializers.CharField(help_text="unique in the fleet; also the gRPC device_id")
    rtsp_endpoint = serializers.CharField(source="rtsp_endpoint_masked",
                                          help_text="password masked: rtsp://user:***@host/...")
    rtmp_endpoint = OmittedIfBlankCharField(source="rtmp_endpoint_masked", required=False,
                                            help_text="masked; absent when the camera has none")
    container_id = serializers.CharField(allow_blank=True)
    image_tag = serializers.CharField()
    created = MillisecondsField(help_text="ms since epoch")
    modified = MillisecondsField(help_text="ms since epoch")
    status = StatusField()
    state = ContainerStateField()
    logs = LogsField()
    rtmp_stream_status = RtmpStreamStatusField()
    upgrade_available = UpgradeAvailableField()
    newer_version = NewerVersionField()
    host = serializers.CharField(source="host.name", help_text="the edge host that runs it")
    desired_state = serializers.ChoiceField(choices=DesiredState.choices)
    operation = OperationSerializer(source="last_operation", allow_null=True, help_text="the last operation")
    stream = StreamField(help_text="live facts from the camera process")
    recording = RecordingField()

    class Meta:
        ref_name = "StreamProcess"
        list_serializer_class = StreamProcessListSerializer


class DictOrEmptyField(serializers.DictField):
    """A JSON object, or {} where the model stores none."""

    def get_attribute(self, instance):
        return super().get_attribute(instance) or {}


@extend_schema_field(serializers.CharField())
class ResultTextField(serializers.Field):
    """A text key of the stored result: documented here, answered by ``TaskSerializer.to_representation``."""

    def __init__(self, **kwargs):
        super().__init__(source="*", required=False, **kwargs)

    def get_attribute(self, instance):
        raise SkipField()


class TaskSerializer(OperationSerializer):
    # An operation in detail (GET /tasks, /tasks/{id}, the image pull): its stored result's keys at the end.

    camera = NullIfBlankCharField(source="camera_name", allow_null=True)
    host = serializers.CharField(source="host.name", allow_null=True)
    started = MillisecondsField(allow_null=True, help_text="ms since epoch")
    progress = DictOrEmptyField(help_text="pulls: bytes and layers done")
    response = ResultTextField(help_text="pulls: the pull log, at the end")

    class Meta:
        ref_name = "Task"

    def to_representation(self, op):
        body = super().to_representation(op)
        body.update(op.result or {})  # as stored: e.g. a pull's "response"
        return body


# --- edge hosts ------------------------------------------------------------------------------


class HostImageSerializer(serializers.Serializer):
    repository = serializers.CharField()
    tag = serializers.CharField(allow_blank=True)
    id = serializers.CharField(allow_blank=True)
    size = serializers.IntegerField(allow_null=True, required=False)
    created = serializers.CharField(allow_null=True, required=False)

    class Meta:
        ref_name = "HostImage"


@extend_schema_field(HostImageSerializer(many=True))
class HostImagesField(serializers.Field):
    """The image inventory as the edge host reported it, answered as stored."""

    def to_representation(self, value):
        return value


class EdgeHostSerializer(serializers.Serializer):
    name = serializers.CharField()
    queue = serializers.CharField()
    online = serializers.BooleanField(source="is_online",
                                      help_text="heard from within EDGEPROXY_OFFLINE_AFTER_BEATS heartbeats")
    last_heartbeat = MillisecondsField(allow_null=True, help_text="ms since epoch")
    runtime = serializers.CharField(allow_blank=True)
    facts = serializers.DictField()
    frames_address = NullIfBlankCharField(allow_null=True)
    cameras = serializers.IntegerField(source="camera_count")  # selectors.hosts() counts them
    images = HostImagesField()
    created = MillisecondsField(help_text="ms since epoch")

    class Meta:
        ref_name = "EdgeHost"


# --- annotations -----------------------------------------------------------------------------


class AnnotationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    device_name = serializers.CharField(source="camera_name")
    host = NullIfBlankCharField(allow_null=True)
    type = serializers.CharField()
    start_timestamp = serializers.IntegerField(help_text="ms since epoch")
    end_timestamp = serializers.IntegerField(allow_null=True)
    object_type = NullIfBlankCharField(allow_null=True)
    confidence = serializers.FloatField(allow_null=True)
    data = serializers.DictField(help_text="every field of the AnnotateRequest")
    created = MillisecondsField()
    clip_url = serializers.SerializerMethodField(
        help_text="the footage around the event (its camera records): GET it for one MP4; null otherwise")

    class Meta:
        ref_name = "Annotation"

    def get_clip_url(self, annotation) -> str | None:
        if "recording_cameras" not in self.context:  # one query per answer
            self.context["recording_cameras"] = recording_selectors.recording_cameras()
        if annotation.camera_name not in self.context["recording_cameras"]:
            return None
        return recording_selectors.clip_url(annotation.camera_name, annotation.start_timestamp,
                                            annotation.end_timestamp)


def camera_record(camera) -> dict:
    """StreamProcessSerializer's record of ``camera``, by one serializer per thread, reused: a new
    serializer deep-copies each of its declared fields (a tenth of a connect's CPU in the API)."""
    serializer = getattr(_record_serializers, "camera", None)
    if serializer is None:
        serializer = _record_serializers.camera = StreamProcessSerializer()
    serializer._context = {}  # a context of its own for each record, as a new serializer has
    return serializer.to_representation(camera)


_record_serializers = threading.local()


def operation_record(op) -> dict | None:
    return None if op is None else OperationSerializer(op).data


# --- the fast path of the full lists ----------------------------------------------------------

# JSON and times as text (see below); the rest as stored.
_TEXT_COLUMNS = {"state_text": "state", "logs_text": "logs", "stream_text": "stream", "created_text": "created",
                 "modified_text": "modified", "observed_at_text": "observed_at", "recording_text": "recording",
                 "op_created_text": "last_operation__created", "op_finished_text": "last_operation__finished"}
_LIST_COLUMNS = (
    "name", "rtsp_endpoint_masked", "rtmp_endpoint_masked", "container_id", "image_tag", "created_text",
    "modified_text", "status", "desired_state", "storing", "host_id", "state_text", "logs_text", "stream_text",
    "last_operation__id", "last_operation__kind", "last_operation__state", "last_operation__error",
    "op_created_text", "op_finished_text", "observed_at_text", "recording_text",
)


def _ms_of_text(text: str | None) -> int | None:
    """A stored time read as text, in ms as ``ms`` gives it: the driver's own conversion of thousands
    of times was a third of the list's time. (SQLite stores UTC without an offset.)"""
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return ms(moment if moment.tzinfo else moment.replace(tzinfo=UTC))

# The stored JSON columns are read as their text and turned into the renderer's bytes once per
# distinct text (a camera's state and logs change seldom): parsing and encoding them for every
# camera at every call was most of the list's time.
_JSON_CACHE_SIZE = 65536
_string = json_encoder.encode_basestring  # the renderer's own string encoding (ensure_ascii off)


@functools.lru_cache(maxsize=_JSON_CACHE_SIZE)
def _state_json(text: str | None) -> str | None:
    """The stored state as the renderer writes it; None when empty (the record then shows ``empty_state``)."""
    value = json.loads(text) if text else None
    return live.compact(value) if value else None


@functools.lru_cache(maxsize=_JSON_CACHE_SIZE)
def _logs_json(text: str | None) -> str:
    logs = (json.loads(text) if text else None) or {}
    return live.compact({"stdout": logs.get("stdout"), "stderr": logs.get("stderr")})


def _recording_json(wanted_text: str | None, stream_json: str) -> str:
    """The record's ``recording``; the stream is parsed only when it carries a recording report."""
    if '"recording"' in stream_json:
        wanted = json.loads(wanted_text) if wanted_text else None
        return live.compact(recording_selectors.recording_status(wanted, json.loads(stream_json)))
    return _unobserved_recording_json(wanted_text)


@functools.lru_cache(maxsize=_JSON_CACHE_SIZE)
def _unobserved_recording_json(wanted_text: str | None) -> str:
    wanted = json.loads(wanted_text) if wanted_text else None
    return live.compact(recording_selectors.recording_status(wanted, None))


@functools.lru_cache(maxsize=_JSON_CACHE_SIZE)  # (a row's stream moves only when its observation does)
def _stream_json(text: str | None) -> tuple[str, str]:
    """The stored stream as the renderer writes it ("null" when empty), and its RTMP flags (as live.write)."""
    stream = json.loads(text) if text else None
    if not stream:
        return "null", "0-"
    storing = "-" if "storing" not in stream else "1" if stream["storing"] else "0"
    return live.compact(stream), ("1" if stream.get("rtmp_streaming") else "0") + storing


@functools.lru_cache(maxsize=64)
def _empty_state_json(status: str) -> str:
    return live.compact(selectors.empty_state(status))


def _null_or_int(value) -> str:
    return "null" if value is None else str(value)


def camera_list_json(host: str | None = None, status: str | None = None) -> bytes:
    """The bytes of ``camera_list_answer``."""
    return camera_list_answer(host, status)[0]


def camera_list_answer(host: str | None = None, status: str | None = None) -> tuple[bytes, str | None]:
    """``camera_list_json`` and its ETag: a hash of what the bytes are made of (the cache key, the
    filter and the live stream facts spliced in), not of the megabytes themselves (the MD5 that
    ConditionalGetMiddleware would take of 2,000 records costs ~5 ms). None when there is no cache
    key (other databases than PostgreSQL): the middleware then hashes the bytes.

    Every camera (of ``host``, with shown ``status``) as StreamProcessSerializer would render the
    list (the same bytes), built for thousands of cameras: rows instead of model objects, the stored
    JSON spliced in as cached text (``_state_json``...), each record written as the renderer would.

    The records' stored part is kept (``_LIST_CACHE``) while the cameras' rows, their last
    operations' and the hosts' names, images and online flags stay the same: an unchanged fleet then
    costs a small version read and the hosts' rows instead of every camera's. The live stream facts
    (Redis) are spliced in at every call."""
    cutoff = EdgeHost.online_cutoff()
    hosts = tuple((hid, name, last_heartbeat is not None and last_heartbeat >= cutoff, images)
                  for hid, name, last_heartbeat, images in EdgeHost.objects.annotate(
                      images_text=Cast("images", TextField())).values_list("id", "name", "last_heartbeat",
                                                                           "images_text").order_by("id"))
    version = selectors.camera_list_version()
    key = None if version is None else (version, hosts)
    cached = _LIST_CACHE.get((host, status))
    if key is not None and cached is not None and cached[0] == key:
        entries = cached[1]
    else:
        entries = _list_entries(host, status, hosts)
        if key is not None and len(entries) <= _LIST_CACHE_RECORDS:
            kept = sum(len(records) for _key, records in list(_LIST_CACHE.values()))
            if len(_LIST_CACHE) >= _LIST_CACHE_FILTERS or kept + len(entries) > _LIST_CACHE_RECORDS:
                _LIST_CACHE.clear()
            _LIST_CACHE[(host, status)] = (key, entries)
    live_streams = live.read_raw([entry[0] for entry in entries] if host else None)
    parts = ["["]  # (the records' pieces joined once: no string per record)
    spliced = []  # the live facts used, for the ETag
    for name, since, head, middle, stream_json, flags, storing, recording in entries:
        entry = live_streams.get(name)
        if entry is not None and entry[0] >= since:
            _at, flags, stream_json = entry
            spliced += (name, flags, stream_json)
        parts += (head, _rtmp_status_json(flags, storing), middle, stream_json, ',"recording":',
                  _recording_json(recording, stream_json), "},")
    if entries:
        parts[-1] = "}"
    parts.append("]")
    text = "".join(parts)
    etag = None
    if key is not None:
        digest = hashlib.md5(repr((key, host, status)).encode(), usedforsecurity=False)
        digest.update("\0".join(spliced).encode())
        etag = f'"{digest.hexdigest()}"'
    # As the renderer does (a strict JavaScript subset).
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode(), etag


# The stored part of the full lists' records, by filter: (key, entries) (``camera_list_json``), at
# most this many records in all (about 1.3 kB each: some 80 MB per API process).
_LIST_CACHE: dict[tuple, tuple] = {}
_LIST_CACHE_RECORDS = 60_000
_LIST_CACHE_FILTERS = 64  # (and filters: any host name may be asked for)


def _list_entries(host: str | None, status: str | None, hosts: tuple) -> list[tuple]:
    """The stored part of each listed camera's record: ``(name, ms its stored stream is of, the record
    up to rtmp_stream_status, from upgrade_available up to stream, the stored stream, its RTMP flags,
    storing, the wanted recording as text)``."""
    online = {hid: is_online for hid, _name, is_online, _images in hosts}
    host_names = {hid: _string(name) for hid, name, _online, _images in hosts}
    host_images = {hid: json.loads(images) if images else None for hid, _name, _online, images in hosts}
    upgrades = selectors.UpgradeIndex()
    qs = selectors.cameras(host=host).annotate(**{alias: Cast(column, TextField())
                                                  for alias, column in _TEXT_COLUMNS.items()})
    newer_versions: dict[tuple[int, str], str | None] = {}
    entries = []
    for row in qs.values_list(*_LIST_COLUMNS):
        (name, masked, rtmp, container_id, image_tag, created, modified, stored_status, desired, storing, host_id,
         state, logs, stream, op_id, op_kind, op_state, op_error, op_created, op_finished, observed_at, recording) = row
        shown = selectors.shown_status(stored_status, online[host_id])
        if status and shown != status:
            continue
        created, modified = _ms_of_text(created), _ms_of_text(modified)
        stream_json, flags = _stream_json(stream)
        key = (host_id, image_tag)
        if key not in newer_versions:
            newer_versions[key] = upgrades.newer_for(host_id, host_images[host_id], image_tag)
        newer = newer_versions[key]
        operation = "null" if op_id is None else (
            f'{{"id":"{op_id}","kind":{_string(op_kind)},"state":{_string(op_state)},'
            f'"error":{_string(op_error) if op_error else "null"},"created":{_null_or_int(_ms_of_text(op_created))},'
            f'"finished":{_null_or_int(_ms_of_text(op_finished))}}}')
        head = (f'{{"name":{_string(name)},"rtsp_endpoint":{_string(masked)},'
                + (f'"rtmp_endpoint":{_string(rtmp)},' if rtmp else "")
                + f'"container_id":{_string(container_id)},"image_tag":{_string(image_tag)},'
                f'"created":{created},"modified":{modified},'
                f'"status":{_string(shown)},"state":{_state_json(state) or _empty_state_json(shown)},'
                f'"logs":{_logs_json(logs)},"rtmp_stream_status":')
        middle = (f',"upgrade_available":{"false" if newer is None else "true"},'
                  + (f'"newer_version":{_string(newer)},' if newer is not None else "")
                  + f'"host":{host_names[host_id]},"desired_state":{_string(desired)},"operation":{operation},'
                  '"stream":')
        entries.append((name, _ms_of_text(observed_at) or created, head, middle, stream_json, flags, storing,
                        recording))
    return entries


@functools.lru_cache(maxsize=16)
def _rtmp_status_json(flags: str, storing: bool) -> str:
    """``rtmp_stream_status`` from a stream's RTMP flags (``live.write``) and the stored ``storing``."""
    return ('{"streaming":' + ("true" if flags[0] == "1" else "false") + ',"storing":'
            + ("true" if (flags[1] == "1" if flags[1] != "-" else storing) else "false") + "}")
