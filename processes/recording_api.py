"""Recording routes: switch recording of a camera, list its segments, fetch a segment or a clip."""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from edgeproxy.api import schema as oas
from edgeproxy.api.errors import NotFound
from edgeproxy.api.fields import StrictBooleanField
from processes import api as camera_api
from processes import recording_services, services
from worker.camera.recorder import SEGMENT_RULE

MP4_RESPONSES = {(200, "video/mp4"): OpenApiResponse(OpenApiTypes.BINARY, description="fragmented MP4, streamed"),
                 **oas.errors(400, 404, 503)}


class RecordingSerializer(serializers.Serializer):
    enabled = StrictBooleanField()
    retention_hours = serializers.FloatField(required=False, min_value=0.001,
                                             max_value=recording_services.MAX_RETENTION_HOURS,
                                             help_text=f"default {recording_services.DEFAULT_RETENTION_HOURS:g}")


class SegmentSerializer(serializers.Serializer):
    start = serializers.IntegerField(help_text="ms since epoch")
    end = serializers.IntegerField(help_text="ms since epoch")
    duration_ms = serializers.IntegerField()
    size = serializers.IntegerField(help_text="bytes")
    codec = serializers.CharField(help_text="h264 or hevc")
    url = serializers.CharField()


MS_MAX = 2**53  # the largest ms a JSON number holds exactly

RANGE_PARAMETERS = [
    oas.query("from", OpenApiTypes.INT, "ms since epoch (default: an hour before to)", minimum=0,
              maximum=MS_MAX),
    oas.query("to", OpenApiTypes.INT, "ms since epoch (default: now)", minimum=0, maximum=MS_MAX),
]


class ProcessRecording(camera_api.OperationView):
    @extend_schema(request=RecordingSerializer,
                   summary="Switch recording of a camera: {\"enabled\", \"retention_hours\"}",
                   examples=oas.request_example("recording", {"enabled": True, "retention_hours": 72}))
    def put(self, request, name):
        data = RecordingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        camera = recording_services.set_recording(services.get_camera(name), data.validated_data["enabled"],
                                                  data.validated_data.get("retention_hours"))
        return camera_api.operation_response(request, camera.name, camera.last_operation_id)


class ProcessRecordings(APIView):
    @extend_schema(summary="Recorded segments of a camera overlapping from..to (at most 7 days)",
                   responses={200: SegmentSerializer(many=True)}, parameters=RANGE_PARAMETERS)
    def get(self, request, name):
        camera = services.get_camera(name)
        segments = recording_services.list_recordings(camera, camera_api._int_param(request, "from", 0, MS_MAX),
                                                      camera_api._int_param(request, "to", 0, MS_MAX))
        if not segments:
            raise NotFound(f"Camera {name} has no footage in that range.")
        return Response(segments)


def _mp4(chunks, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="video/mp4")
    response["Cache-Control"] = "no-store"
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


class ProcessRecordingSegment(APIView):
    @extend_schema(summary="One recorded segment (fragmented MP4)", responses=MP4_RESPONSES,
                   parameters=[oas.path("file", SEGMENT_RULE, "segment file name, as the listing's url ends")])
    def get(self, request, name, file):
        camera = services.get_camera(name)
        if not SEGMENT_RULE.fullmatch(file):
            raise NotFound(f"No segment {file!r} of camera {name}.")
        return _mp4(recording_services.segment_bytes(camera, file), file)


class ProcessClip(APIView):
    @extend_schema(summary="One MP4 of a camera's footage from..to, from the keyframe at or before from "
                           "(at most EDGEPROXY_RECORDING_CLIP_MAX_SECONDS)",
                   responses=MP4_RESPONSES,
                   parameters=[oas.query(side, OpenApiTypes.INT, "ms since epoch", minimum=0, maximum=MS_MAX,
                                         required=True) for side in ("from", "to")])
    def get(self, request, name):
        camera = services.get_camera(name)
        start = camera_api._int_param(request, "from", 0, MS_MAX)
        end = camera_api._int_param(request, "to", 0, MS_MAX)
        chunks = recording_services.clip(camera, start, end)
        return _mp4(chunks, f"{name}-{start}-{end}.mp4")


__all__ = ["ProcessClip", "ProcessRecording", "ProcessRecordingSegment", "ProcessRecordings"]
