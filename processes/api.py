"""Camera, host and operation routes: validate, call a service or selector, serialize."""

from urllib.parse import urlsplit

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from edgeproxy.api import lists
from edgeproxy.api import schema as oas
from edgeproxy.api.errors import Invalid, NotFound, api_message, status_code_of
from edgeproxy.api.fields import StrictBooleanField, StrictCharField, has_space_or_control
from edgeproxy.contracts.names import (
    CAMERA_NAME_HELP,
    CAMERA_NAME_MAX,
    CAMERA_NAME_RULE,
    IMAGE_HELP,
    IMAGE_RULE,
    TAG_RULE,
)
from processes import filters, outputs, recording_services, selectors, services
from processes.models import OperationState

MAX_WAIT_SECONDS = 60


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    if len(value) > 2048:
        raise serializers.ValidationError("must be at most 2048 characters.")
    if has_space_or_control(value):
        raise serializers.ValidationError("must not contain white space or control characters.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise serializers.ValidationError(f"must be a valid {' or '.join(s + '://' for s in schemes)} URL.") from None
    if parts.scheme.lower() not in schemes:
        raise serializers.ValidationError(f"must start with {' or '.join(s + '://' for s in schemes)}.")
    if not parts.hostname:
        raise serializers.ValidationError("must name a host.")
    # Schemes are case-insensitive (RFC 3986), FFmpeg's names are lower case: RTSP:// is stored as rtsp://.
    return parts.scheme.lower() + value[len(parts.scheme):]


class ConnectRecordingSerializer(serializers.Serializer):
    """``recording`` at connect: as ``PUT /process/{name}/recording`` takes it (processes/recording_api.py)."""

    enabled = StrictBooleanField()
    retention_hours = serializers.FloatField(required=False, min_value=0.001,
                                             max_value=recording_services.MAX_RETENTION_HOURS,
                                             default=recording_services.DEFAULT_RETENTION_HOURS)


class ConnectSerializer(serializers.Serializer):
    name = StrictCharField(max_length=CAMERA_NAME_MAX, trim_whitespace=False)
    rtsp_endpoint = StrictCharField(max_length=4096, trim_whitespace=False)
    rtmp_endpoint = StrictCharField(required=False, allow_blank=True, max_length=4096, trim_whitespace=False)
    host = StrictCharField(required=False, allow_blank=True, max_length=63)
    image_tag = StrictCharField(required=False, allow_blank=True, max_length=255)
    rtsp_transport = serializers.ChoiceField(choices=["tcp", "udp"], required=False, default="tcp")
    recording = ConnectRecordingSerializer(required=False, help_text="record from the start (default: off)")

    def validate_name(self, value: str) -> str:
        if not CAMERA_NAME_RULE.fullmatch(value):
            raise serializers.ValidationError(f"must be {CAMERA_NAME_HELP}.")
        return value

    def validate_rtsp_endpoint(self, value: str) -> str:
        return _check_url(value, ("rtsp", "rtsps"))

    def validate_rtmp_endpoint(self, value: str) -> str:
        return _check_url(value, ("rtmp", "rtmps")) if value else value

    def validate_image_tag(self, value: str) -> str:
        if value and not IMAGE_RULE.fullmatch(value):
            raise serializers.ValidationError(f"must be {IMAGE_HELP}.")
        return value


class MoveSerializer(serializers.Serializer):
    host = StrictCharField(max_length=63)


class NameSerializer(serializers.Serializer):
    name = StrictCharField(max_length=63)


def _plain_number(raw: str) -> bool:
    """ASCII only, no spaces or ``_``: what JSON calls a number (Python's int and float take more)."""
    return raw.isascii() and raw == raw.strip() and "_" not in raw


def wait_seconds(request) -> float | None:
    raw = request.query_params.get("wait")
    if raw is None:  # "?wait=" is not a number: a 400 like any other (the schema says number)
        return None
    try:
        if not _plain_number(raw):
            raise ValueError(raw)
        value = float(raw)
    except ValueError:
        raise Invalid("wait: must be a number of seconds from 0 to 60.", {"wait": ["must be a number"]}) from None
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise Invalid("wait: must be a number of seconds from 0 to 60.", {"wait": ["out of range"]})
    return value


class OperationView(APIView):
    """A route that queues an operation: ``?wait=`` is checked before anything changes."""

    queues_operation = True  # the schema documents ?wait= and the operation answers (edgeproxy.api.schema)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.wait = wait_seconds(request)


def operation_response(request, camera_name: str, operation_id, queued=None) -> Response:
    """202 with the record as queued (``queued``, the camera as the service left it, is not read
    again), or with ``?wait=N`` the final record (200) or 504."""
    seconds = wait_seconds(request)
    status = 202
    camera = None
    if seconds:
        waited = services.wait_for_camera_operation(camera_name, operation_id, seconds)
        if waited.record is not None:  # the record as committed at the end
            return Response(waited.record, status=200)
        op, camera = waited.op, waited.camera
        status = 200 if op.state in (OperationState.SUCCEEDED, OperationState.FAILED) else 504
    elif queued is not None:
        return Response(outputs.camera_record(queued), status=status)
    if camera is None:
        camera = selectors.camera_by_name(camera_name)
    if camera is None:  # deleted
        op = selectors.operation_by_id(operation_id)
        return Response({"name": camera_name, "status": "deleted", "operation": outputs.operation_record(op)},
                        status=status)
    return Response(outputs.camera_record(camera), status=status)


class ProcessCollection(OperationView):
    @extend_schema(request=ConnectSerializer, summary="Connect a camera (create and start)",
                   examples=oas.CONNECT_EXAMPLES)
    def post(self, request):
        data = ConnectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        camera = services.connect_camera(**data.validated_data)
        return operation_response(request, camera.name, camera.last_operation_id, queued=camera)


class ProcessDetail(OperationView):
    @extend_schema(summary="A camera: stored and observed state", responses={200: oas.StreamProcessSerializer})
    def get(self, request, name):
        return Response(outputs.camera_record(services.get_camera(name)))

    @extend_schema(request=MoveSerializer, summary="Move a camera to another edge host: {\"host\"}",
                   examples=oas.MOVE_EXAMPLES)
    def patch(self, request, name):
        data = MoveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        camera = services.move_camera(services.get_camera(name), data.validated_data["host"])
        return operation_response(request, camera.name, camera.last_operation_id)

    @extend_schema(summary="Delete a camera: its process, record and frame keys")
    def delete(self, request, name):
        camera = services.delete_camera(services.get_camera(name))
        return operation_response(request, camera.name, camera.last_operation_id)


class ProcessMove(ProcessDetail):
    """``POST /process/{name}/move`` with ``{"host"}``: the same as ``PATCH /process/{name}``."""

    http_method_names = ["post"]
    post = ProcessDetail.patch


class ProcessStart(OperationView):
    @extend_schema(summary="Start a stopped camera")
    def post(self, request, name):
        camera = services.start_camera(services.get_camera(name))
        return operation_response(request, camera.name, camera.last_operation_id)


class ProcessStartRtsp(OperationView):
    """Documented route: ``{"name"}`` starts a known camera; a full connect body connects a new one."""

    @extend_schema(request=NameSerializer, summary="Start a camera (documented route)", examples=oas.NAME_EXAMPLES,
                   responses={**oas.operation_responses(), **oas.errors(404)})
    def post(self, request):
        data = NameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        camera = selectors.camera_by_name(data.validated_data["name"])
        if camera is None:
            if isinstance(request.data, dict) and "rtsp_endpoint" in request.data:
                connect = ConnectSerializer(data=request.data)
                connect.is_valid(raise_exception=True)
                camera = services.connect_camera(**connect.validated_data)
                return operation_response(request, camera.name, camera.last_operation_id)
            raise NotFound(f"No camera named {data.validated_data['name']!r}.")
        camera = services.start_camera(camera)
        return operation_response(request, camera.name, camera.last_operation_id)


class ProcessStop(OperationView):
    @extend_schema(summary="Stop a camera and keep its record")
    def post(self, request, name):
        camera = services.stop_camera(services.get_camera(name))
        return operation_response(request, camera.name, camera.last_operation_id)

    delete = post


class ProcessList(APIView):
    @extend_schema(summary="Every camera (filters: host, status)",
                   responses={200: oas.StreamProcessSerializer(many=True)},
                   parameters=[oas.query("host", description="only the cameras of this edge host"),
                               oas.query("status", description="only the cameras with this status")])
    def get(self, request):
        body, etag = outputs.camera_list_answer(host=request.query_params.get("host"),
                                                status=request.query_params.get("status"))
        response = HttpResponse(body, content_type="application/json")
        if etag:  # (else ConditionalGetMiddleware hashes the body)
            response["ETag"] = etag
        return response


class UpgradeSerializer(serializers.Serializer):
    """``{"name", "newer_version"}``, or a whole StreamProcess (its ``image_tag`` names the repository)."""

    name = StrictCharField(max_length=63)
    newer_version = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=128)
    image_tag = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=255)

    def validate_newer_version(self, value):
        if value and not TAG_RULE.fullmatch(value):
            raise serializers.ValidationError("must be an image tag such as 0.0.10.")
        return value or None

    def validate_image_tag(self, value):
        if value and not IMAGE_RULE.fullmatch(value):
            raise serializers.ValidationError(f"must be {IMAGE_HELP}.")
        return value or None


class ProcessUpgrades(OperationView):
    @extend_schema(summary="Every camera with upgrade_available and newer_version from its host's images",
                   responses={200: oas.StreamProcessSerializer(many=True)})
    def get(self, request):
        return HttpResponse(outputs.camera_list_json(), content_type="application/json")

    @extend_schema(summary="Upgrade one camera's container to another local image of its host "
                           "(without newer_version: the newest)", request=UpgradeSerializer,
                   examples=oas.UPGRADE_EXAMPLES)
    def post(self, request):
        data = UpgradeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        camera = services.upgrade_camera(services.get_camera(data.validated_data["name"]),
                                         newer_version=data.validated_data.get("newer_version"),
                                         image_tag=data.validated_data.get("image_tag"))
        return operation_response(request, camera.name, camera.last_operation_id)


class ProcessFrame(APIView):
    @extend_schema(summary="The newest frame of a camera as JPEG (?keyframe=true for the newest keyframe)",
                   responses=oas.JPEG_RESPONSES,
                   parameters=[oas.query("keyframe", description="true: the newest keyframe")])
    def get(self, request, name):
        keyframe = request.query_params.get("keyframe", "false").lower() in ("1", "true", "yes")
        jpeg = services.camera_snapshot(services.get_camera(name), keyframe_only=keyframe)
        response = HttpResponse(jpeg, content_type="image/jpeg")
        response["Cache-Control"] = "no-store"
        return response


# --- paged, filtered lists (edgeproxy/api/lists.py) -------------------------------------------


class PagedList(GenericAPIView):
    """A list with django-filter filters and limit/offset pages; records in a stable order (``tiebreak``
    last, so that no record is on two pages or none)."""

    filter_backends = [lists.StrictFilterBackend]
    pagination_class = lists.ListPagination
    tiebreak = "name"

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        ordering = list(queryset.query.order_by)
        if not any(field.lstrip("-") == self.tiebreak for field in ordering):
            queryset = queryset.order_by(*ordering, self.tiebreak)
        return queryset

    def records(self, items) -> list:
        return self.get_serializer(items, many=True).data

    def get(self, request):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        if page is None:
            return Response(self.records(queryset))
        return self.get_paginated_response(self.records(page))


class CameraList(PagedList):
    serializer_class = outputs.StreamProcessSerializer
    filterset_class = filters.CameraFilter

    def get_queryset(self):
        return selectors.cameras()

    @extend_schema(summary="Cameras, a page at a time (filters: host, status, desired_state, name_prefix)",
                   responses={200: outputs.StreamProcessSerializer(many=True)},
                   parameters=[*filters.CAMERA_PARAMETERS, *lists.PAGE_PARAMETERS, *lists.PAGE_HEADERS])
    def get(self, request):
        return super().get(request)


class HostCollection(PagedList):
    """Every edge host; a page of them with ``limit`` or ``offset`` (the full list stays the default)."""

    serializer_class = outputs.EdgeHostSerializer
    filterset_class = filters.HostFilter
    pagination_class = lists.OptionalListPagination

    def get_queryset(self):
        return selectors.hosts()

    @extend_schema(summary="Edge hosts (filters: online, name_prefix; a page with limit or offset)",
                   responses={200: outputs.EdgeHostSerializer(many=True)},
                   parameters=[*filters.HOST_PARAMETERS, *lists.PAGE_PARAMETERS, *lists.PAGE_HEADERS])
    def get(self, request):
        return super().get(request)


class TaskList(PagedList):
    serializer_class = outputs.TaskSerializer
    filterset_class = filters.OperationFilter
    tiebreak = "id"

    def get_queryset(self):
        return selectors.operation_list()

    @extend_schema(summary="Operations, newest first, a page at a time (filters: camera, host, kind, state)",
                   responses={200: outputs.TaskSerializer(many=True)},
                   parameters=[*filters.OPERATION_PARAMETERS, *lists.PAGE_PARAMETERS, *lists.PAGE_HEADERS])
    def get(self, request):
        return super().get(request)


# --- bulk onboarding -------------------------------------------------------------------------


class BulkConnectSerializer(serializers.Serializer):
    cameras = serializers.ListField(
        child=ConnectSerializer(), min_length=1, max_length=services.MAX_BULK_CONNECT,
        help_text=f"1 to {services.MAX_BULK_CONNECT} connect bodies, as POST /process takes")


class BulkOutcomeSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="the camera's place in the request, from 0")
    name = serializers.CharField()
    code = serializers.IntegerField(help_text="202 queued, else the status a single connect would answer")
    message = serializers.CharField(allow_null=True, help_text="why not (null when queued)")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
    operation = outputs.OperationSerializer(allow_null=True, help_text="the connect operation (null when refused)")

    class Meta:
        ref_name = "BulkConnectOutcome"


class BulkConnectResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="cameras queued")
    refused = serializers.IntegerField(help_text="cameras not connected")
    cameras = BulkOutcomeSerializer(many=True, help_text="one per camera of the request, in its order")

    class Meta:
        ref_name = "BulkConnectResult"


def _flat_errors(detail, path: str = "") -> dict[str, list[str]]:
    """DRF's nested validation detail as ``{"cameras[3].name": [...]}`` (errors of a list itself, such
    as its length, under the list's name)."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            if isinstance(key, int):  # a ListField's errors are keyed by the item's index
                inner = f"{path}[{key}]"
            elif key == "non_field_errors" and path:
                inner = path
            else:
                inner = f"{path}.{key}" if path else str(key)
            flat.update(_flat_errors(value, inner))
        return flat
    if isinstance(detail, list) and any(isinstance(d, dict | list) for d in detail):
        flat = {}
        for index, value in enumerate(detail):
            flat.update(_flat_errors(value, f"{path}[{index}]"))
        return flat
    return {path or "non_field_errors": [str(d) for d in (detail if isinstance(detail, list) else [detail])]}


def _outcome(index: int, outcome: services.ConnectOutcome) -> dict:
    if outcome.camera is not None:
        return {"index": index, "name": outcome.name, "code": 202, "message": None,
                "operation": outputs.operation_record(outcome.camera.last_operation)}
    error = outcome.error
    body = {"index": index, "name": outcome.name, "code": status_code_of(error), "message": api_message(error)}
    if error.errors:
        body["errors"] = error.errors
    body["operation"] = None
    return body


class CameraBulkConnect(APIView):
    @extend_schema(summary=f"Connect up to {services.MAX_BULK_CONNECT} cameras in one request",
                   request=BulkConnectSerializer, responses={202: BulkConnectResultSerializer},
                   examples=oas.request_example("bulk connect", {"cameras": [
                       {"name": "gate-1", "rtsp_endpoint": "rtsp://user:pass@192.168.1.21/stream"},
                       {"name": "gate-2", "rtsp_endpoint": "rtsp://user:pass@192.168.1.22/stream", "host": "edge-2"},
                   ]}))
    def post(self, request):
        data = BulkConnectSerializer(data=request.data)
        if not data.is_valid():
            errors = _flat_errors(data.errors)
            field, messages = next(iter(errors.items()))
            raise Invalid(f"{field}: {messages[0]}" if field != "non_field_errors" else messages[0], errors)
        outcomes = services.connect_cameras(data.validated_data["cameras"])
        results = [_outcome(i, o) for i, o in enumerate(outcomes)]
        accepted = sum(1 for o in outcomes if o.camera is not None)
        return Response({"accepted": accepted, "refused": len(outcomes) - accepted, "cameras": results}, status=202)


class HostDetail(APIView):
    @extend_schema(summary="One edge host", responses={200: outputs.EdgeHostSerializer})
    def get(self, request, name):
        host = selectors.host_by_name(name)
        if host is None:
            raise NotFound(f"No edge host named {name!r}.")
        return Response(outputs.EdgeHostSerializer(host).data)


class TaskDetail(APIView):
    @extend_schema(summary="An asynchronous operation", responses={200: outputs.TaskSerializer})
    def get(self, request, task_id):
        op = selectors.operation_by_id(task_id)
        if op is None:
            raise NotFound(f"No task {task_id}.")
        return Response(outputs.TaskSerializer(op).data)


def _int_param(request, name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:  # "?limit=" is not an integer: a 400 (the schema says integer)
        return None
    try:
        if not _plain_number(raw):
            raise ValueError(raw)
        value = int(raw)
    except ValueError:
        raise Invalid(f"{name}: must be an integer.", {name: ["must be an integer"]}) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise Invalid(f"{name}: must be between {minimum} and {maximum}.", {name: ["out of range"]})
    return value


class AnnotationList(APIView):
    @extend_schema(summary="Annotation events (filters: camera, type, from, to in ms; limit)",
                   responses={200: outputs.AnnotationSerializer(many=True)}, parameters=oas.ANNOTATION_PARAMETERS)
    def get(self, request):
        found = selectors.annotations(
            camera=request.query_params.get("camera"),
            type=request.query_params.get("type"),
            start=_int_param(request, "from", 0),
            end=_int_param(request, "to", 0),
            limit=_int_param(request, "limit", 1, 10000) or 1000,
        )
        return Response(outputs.AnnotationSerializer(found, many=True).data)
