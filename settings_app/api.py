"""Settings routes. (The image routes, which need the edge hosts, are ``processes.image_api``.)"""

import re

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from edgeproxy.api import schema as oas
from edgeproxy.api.errors import Invalid
from edgeproxy.api.fields import StrictCharField
from edgeproxy.contracts.names import IMAGE_HELP, IMAGE_RULE, REGISTRY_URL_RULE
from settings_app import outputs, selectors, services
from settings_app.registry import check_registry_url

# POST /settings/overwrite/{edge_params}: "-" (the body has the values) or <edge_key>:<edge_secret>.
EDGE_PARAMS_RULE = re.compile(r"-|[^:/\x00]{1,255}:[^/\x00]{1,1024}")


class SettingsSerializer(serializers.Serializer):
    name = StrictCharField(required=False, max_length=63)
    edge_key = StrictCharField(required=False, allow_blank=True, max_length=255)
    edge_secret = StrictCharField(required=False, allow_blank=True, max_length=1024, trim_whitespace=False)
    project_id = StrictCharField(required=False, allow_blank=True, max_length=255)
    region = StrictCharField(required=False, allow_blank=True, max_length=64)
    registry_id = StrictCharField(required=False, allow_blank=True, max_length=255)
    gateway_id = StrictCharField(required=False, allow_blank=True, max_length=255)
    camera_image = StrictCharField(required=False, allow_blank=True, max_length=255)
    registry_url = StrictCharField(required=False, allow_blank=True, max_length=255, trim_whitespace=False)

    def validate_registry_url(self, value: str) -> str:
        if value and not REGISTRY_URL_RULE.fullmatch(value):
            raise serializers.ValidationError("must be an http:// or https:// URL with a host (and port) only.")
        problem = check_registry_url(value) if value else None
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_camera_image(self, value: str) -> str:
        if value and not IMAGE_RULE.fullmatch(value):
            raise serializers.ValidationError(f"must be {IMAGE_HELP}.")
        return value


def _overwrite(data: dict) -> Response:
    fields = dict(data)
    fields.pop("name", None)
    current = services.overwrite_settings(**fields)
    return Response(outputs.SettingsResponseSerializer(current).data)


class SettingsView(APIView):
    @extend_schema(summary="Fleet settings (the edge secret is never returned)",
                   responses={200: outputs.SettingsResponseSerializer})
    def get(self, request):
        return Response(outputs.SettingsResponseSerializer(selectors.edge_settings()).data)

    @extend_schema(request=SettingsSerializer, summary="Overwrite settings (original route)",
                   examples=oas.SETTINGS_EXAMPLES,
                   responses={200: outputs.SettingsResponseSerializer})
    def post(self, request):
        data = SettingsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _overwrite(data.validated_data)


class SettingsOverwrite(APIView):
    """``POST /settings/overwrite/<edge_key>:<edge_secret>``, or the same values as a JSON body."""

    @extend_schema(request=SettingsSerializer, summary="Overwrite the edge key and secret (documented route)",
                   responses={200: outputs.SettingsResponseSerializer},
                   parameters=[oas.path("edge_params", EDGE_PARAMS_RULE,
                                        "<edge_key>:<edge_secret>, or - to use the body")])
    def post(self, request, edge_params: str):
        body = request.data
        if not isinstance(body, dict):
            raise Invalid("The body must be a JSON object (or empty).")
        if not EDGE_PARAMS_RULE.fullmatch(edge_params):
            raise Invalid("edgeParams: must be <edge_key>:<edge_secret>.", {"edgeParams": ["malformed"]})
        if edge_params != "-":
            key, _, secret = edge_params.partition(":")
            body = {**body, "edge_key": key, "edge_secret": secret}
        data = SettingsSerializer(data=body)
        data.is_valid(raise_exception=True)
        return _overwrite(data.validated_data)
