"""The original's app routes: ``POST /appprocess``, ``GET /appprocesslist``, ``GET`` and ``DELETE
/appprocess/{name}``, plus start and stop. Bodies are the original's AppProcess (its read-only
fields are ignored), with ``host``, ``cameras``, ``host_network``, ``cpus`` and ``memory_mb``."""

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from edgeproxy.api import schema as oas
from edgeproxy.api.errors import Invalid
from edgeproxy.api.fields import StrictCharField
from edgeproxy.contracts.names import CAMERA_NAME_HELP, CAMERA_NAME_MAX, CAMERA_NAME_RULE
from processes import app_outputs as outputs
from processes import app_selectors as selectors
from processes import app_services as services
from processes import filters
from processes import selectors as camera_selectors
from processes.api import OperationView, wait_seconds
from processes.models import OperationState

MAX_ITEMS = 64


@extend_schema_field({"type": "string", "pattern": f"^{CAMERA_NAME_RULE.pattern}$", "maxLength": CAMERA_NAME_MAX})
class AppNameField(StrictCharField):
    """An app's name: the rule of a camera's name (it names a container and a data folder)."""


class NameValueSerializer(serializers.Serializer):
    name = StrictCharField(max_length=255, trim_whitespace=False)
    value = StrictCharField(max_length=4096, allow_blank=True, required=False, default="", trim_whitespace=False)
    secret = serializers.BooleanField(required=False, default=False)


class PortMappingSerializer(serializers.Serializer):
    exposed = serializers.IntegerField()
    map_to = serializers.IntegerField()


class AppProcessSerializer(serializers.Serializer):
    name = AppNameField(max_length=CAMERA_NAME_MAX, trim_whitespace=False)
    docker_user = StrictCharField(max_length=255, required=False, allow_blank=True, allow_null=True, default="")
    docker_repository = StrictCharField(max_length=255)
    docker_version = StrictCharField(max_length=128)
    env_vars = NameValueSerializer(many=True, required=False, allow_null=True, max_length=MAX_ITEMS)
    arguments = NameValueSerializer(many=True, required=False, allow_null=True, max_length=MAX_ITEMS)
    port_mappings = PortMappingSerializer(many=True, required=False, allow_null=True, max_length=MAX_ITEMS)
    mount = NameValueSerializer(many=True, required=False, allow_null=True, max_length=MAX_ITEMS)
    runtime = StrictCharField(max_length=16, required=False, allow_blank=True, allow_null=True, default="")
    host = StrictCharField(max_length=63, required=False, allow_blank=True, allow_null=True)
    cameras = serializers.ListField(child=StrictCharField(max_length=63), required=False, allow_null=True,
                                    max_length=MAX_ITEMS)
    host_network = serializers.BooleanField(required=False, default=False)
    cpus = serializers.FloatField(required=False, allow_null=True)
    memory_mb = serializers.IntegerField(required=False, allow_null=True)

    def validate_name(self, value: str) -> str:
        if not CAMERA_NAME_RULE.fullmatch(value):
            raise serializers.ValidationError(f"must be {CAMERA_NAME_HELP}.")
        return value

    def validate(self, attrs):
        # The original portal sends null or [] for empty lists: both mean none.
        return {key: value for key, value in attrs.items() if value is not None}


def app_response(request, name: str, operation_id) -> Response:
    """202 with the app as queued, or with ``?wait=N`` the final record (200) or 504, like a camera."""
    seconds = wait_seconds(request)
    status = 202
    if seconds:
        from processes.services import wait_for_operation

        op = wait_for_operation(operation_id, seconds)
        status = 200 if op.state in (OperationState.SUCCEEDED, OperationState.FAILED) else 504
    app = selectors.app_by_name(name)
    if app is None:
        op = camera_selectors.operation_by_id(operation_id)
        return Response(oas.DeletedProcessSerializer({"name": name, "status": "deleted", "operation": op}).data,
                        status=status)
    return Response(outputs.app_record(app), status=status)


AppProcessOrDeleted = PolymorphicProxySerializer(
    component_name="AppProcessOrDeleted",
    serializers=[outputs.AppProcessRecordSerializer, oas.DeletedProcessSerializer],
    resource_type_field_name=None,
)
CHANGE_RESPONSES = {**oas.operation_responses(outputs.AppProcessRecordSerializer), **oas.errors(403)}
DELETE_RESPONSES = {**oas.operation_responses(AppProcessOrDeleted), **oas.errors(403)}


class AppProcessCollection(OperationView):
    @extend_schema(request=AppProcessSerializer, responses=CHANGE_RESPONSES,
                   summary="Install and start an app process (image on the allow-list)")
    def post(self, request):
        data = AppProcessSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        app = services.install_app(**data.validated_data)
        return app_response(request, app.name, app.last_operation_id)


class AppProcessList(APIView):
    @extend_schema(summary="Every app process (filter: host)",
                   responses={200: outputs.AppProcessRecordSerializer(many=True)},
                   parameters=[oas.query("host", description="only the apps of this edge host",
                                         pattern=filters.HOST_NAME_RULE)])
    def get(self, request):
        host = request.query_params.get("host")
        if host and not filters.HOST_NAME_RULE.fullmatch(host):  # (PostgreSQL cannot even compare a NUL)
            raise Invalid("host: must be 1 to 63 characters, without NUL.", {"host": ["invalid host name"]})
        return Response(outputs.app_list(selectors.apps(host=host)))


class AppProcessDetail(OperationView):
    @extend_schema(summary="An app process, with its container's state and logs",
                   responses={200: outputs.AppProcessRecordSerializer})
    def get(self, request, name):
        return Response(outputs.app_record(services.get_app(name)))

    @extend_schema(summary="Stop and remove an app process (its data folder stays)", responses=DELETE_RESPONSES)
    def delete(self, request, name):
        app = services.delete_app(services.get_app(name))
        return app_response(request, app.name, app.last_operation_id)


class AppProcessStart(OperationView):
    @extend_schema(summary="Start a stopped app process", responses=CHANGE_RESPONSES)
    def post(self, request, name):
        app = services.start_app(services.get_app(name))
        return app_response(request, app.name, app.last_operation_id)


class AppProcessStop(OperationView):
    @extend_schema(summary="Stop an app process and keep it", responses=CHANGE_RESPONSES)
    def post(self, request, name):
        app = services.stop_app(services.get_app(name))
        return app_response(request, app.name, app.last_operation_id)


class AppUpgradeSerializer(serializers.Serializer):
    """``{"name", "newer_version"?}``: a version of the app's image on its host (none: the newest)."""

    name = AppNameField(max_length=CAMERA_NAME_MAX)
    newer_version = StrictCharField(required=False, allow_blank=True, allow_null=True, max_length=128)


class AppProcessUpgrades(OperationView):
    @extend_schema(summary="Every app process with upgrade_available and newer_version from its host's images",
                   responses={200: outputs.AppProcessRecordSerializer(many=True)})
    def get(self, request):
        return Response(outputs.app_list(selectors.apps()))

    @extend_schema(summary="Run an app process on another local version of its image (without newer_version: "
                           "the newest)", request=AppUpgradeSerializer, responses=CHANGE_RESPONSES)
    def post(self, request):
        data = AppUpgradeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        app = services.upgrade_app(services.get_app(data.validated_data["name"]),
                                   data.validated_data.get("newer_version") or None)
        return app_response(request, app.name, app.last_operation_id)
