"""The original's AppProcess as every app route answers it (and as the OpenAPI document shows it),
plus ``host``, ``cameras``, limits and the last operation.

Secret environment values never leave the database in clear: they are shown masked and marked
``secret``. Timestamps are ms since the epoch, like a camera's.
"""

from rest_framework import serializers

from edgeproxy.contracts.statuses import shown_status
from processes import selectors as camera_selectors
from processes.app_services import newer_version
from processes.outputs import MillisecondsField, OperationSerializer
from worker.redaction import MASK


def masked_env(app) -> list[dict]:
    """The app's environment as every answer and page shows it: secret values masked."""
    return [{"name": item["name"], "value": MASK, "secret": True} if item.get("secret")
            else {"name": item["name"], "value": item.get("value", "")} for item in app.env_vars or []]


class EnvVarSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField(allow_blank=True, help_text=f"{MASK} for a secret value")
    secret = serializers.BooleanField(required=False, help_text="present (true) for a secret value")


class NameValueOutSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.CharField(allow_blank=True)


class PortMappingOutSerializer(serializers.Serializer):
    exposed = serializers.IntegerField(help_text="host port")
    map_to = serializers.IntegerField(help_text="container port (tcp)")


class AppLogsSerializer(serializers.Serializer):
    stdout = serializers.CharField(allow_null=True, help_text="base64, last 100 lines")
    stderr = serializers.CharField(allow_null=True, help_text="base64, last 100 lines")


class _Status(serializers.CharField):
    def get_attribute(self, instance):
        return shown_status(instance.status, instance.host.is_online)


class _State(serializers.DictField):
    def get_attribute(self, instance):
        return instance.state or camera_selectors.empty_state(shown_status(instance.status, instance.host.is_online))


class _EnvVars(serializers.ListField):
    child = EnvVarSerializer()

    def get_attribute(self, instance):
        return masked_env(instance)

    def to_representation(self, data):
        return data


class _Logs(AppLogsSerializer):
    def get_attribute(self, instance):
        return instance.logs or {"stdout": None, "stderr": None}


class AppProcessRecordSerializer(serializers.Serializer):
    """An app process (the original's AppProcess fields first)."""

    name = serializers.CharField()
    docker_user = serializers.CharField(allow_blank=True)
    docker_repository = serializers.CharField()
    docker_version = serializers.CharField()
    env_vars = _EnvVars(help_text="secret values masked")
    arguments = NameValueOutSerializer(many=True)
    port_mappings = PortMappingOutSerializer(many=True)
    mount = NameValueOutSerializer(many=True, help_text="name: folder below the app's data folder on its host")
    runtime = serializers.CharField(allow_blank=True)
    container_id = serializers.CharField(allow_blank=True)
    status = _Status()
    state = _State()
    logs = _Logs()
    created = MillisecondsField(help_text="ms since epoch")
    modified = MillisecondsField(help_text="ms since epoch")
    upgrade_available = serializers.SerializerMethodField()
    newer_version = serializers.SerializerMethodField()
    host = serializers.CharField(source="host.name", help_text="the edge host it runs on (its cameras' host)")
    cameras = serializers.ListField(child=serializers.CharField(), help_text="the cameras it reads")
    host_network = serializers.BooleanField()
    cpus = serializers.FloatField()
    memory_mb = serializers.IntegerField()
    desired_state = serializers.CharField()
    operation = OperationSerializer(source="last_operation", allow_null=True)

    class Meta:
        ref_name = "AppProcess"

    def get_upgrade_available(self, app) -> bool:
        return newer_version(app) is not None  # from its host's images, as for cameras

    def get_newer_version(self, app) -> str:
        return newer_version(app) or ""


def app_record(app) -> dict:
    return AppProcessRecordSerializer(app).data


def app_list(apps) -> list:
    return AppProcessRecordSerializer(apps, many=True).data
