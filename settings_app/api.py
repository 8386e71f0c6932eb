"""Settings and image routes."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from edgeproxy.api import schema as oas
from edgeproxy.api.errors import Invalid, NotFound
from edgeproxy.api.fields import StrictCharField
from edgeproxy.api.permissions import may_change
from processes import selectors as process_selectors
from settings_app import selectors, services
from settings_app.versions import REPOSITORY_RULE, TAG_RULE, split_image


class SettingsSerializer(serializers.Serializer):
    name = StrictCharField(required=False, max_length=63)
    edge_key = StrictCharField(required=False, allow_blank=True, max_length=255)
    edge_secret = StrictCharField(required=False, allow_blank=True, max_length=1024, trim_whitespace=False)
    project_id = StrictCharField(required=False, allow_blank=True, max_length=255)
    region = StrictCharField(required=False, allow_blank=True, max_length=64)
    registry_id = StrictCharField(required=False, allow_blank=True, max_length=255)
    gateway_id = StrictCharField(required=False, allow_blank=True, max_length=255)
    camera_image = StrictCharField(required=False, allow_blank=True, max_length=255)
    registry_url = StrictCharField(required=False, allow_blank=True, max_length=255)

    def validate_registry_url(self, value: str) -> str:
        from settings_app.registry import check_registry_url

        value = value.strip()
        problem = check_registry_url(value) if value else None
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_camera_image(self, value: str) -> str:
        from processes.api import IMAGE_RULE

        if value and not IMAGE_RULE.fullmatch(value):
            raise serializers.ValidationError("must be an image reference repository:version.")
        return value


def _overwrite(data: dict) -> Response:
    fields = dict(data)
    fields.pop("name", None)
    current = services.overwrite_settings(**fields)
    return Response(selectors.settings_payload(current))


class SettingsView(APIView):
    @extend_schema(summary="Fleet settings (the edge secret is never returned)",
                   responses={200: oas.SettingsResponseSerializer})
    def get(self, request):
        return Response(selectors.settings_payload())

    @extend_schema(request=SettingsSerializer, summary="Overwrite settings (original route)",
                   responses={200: oas.SettingsResponseSerializer})
    def post(self, request):
        data = SettingsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _overwrite(data.validated_data)


class SettingsOverwrite(APIView):
    """``POST /settings/overwrite/<edge_key>:<edge_secret>``, or the same values as a JSON body."""

    @extend_schema(request=SettingsSerializer, summary="Overwrite the edge key and secret (documented route)",
                   responses={200: oas.SettingsResponseSerializer},
                   parameters=[oas.OpenApiParameter("edge_params", str, "path",
                                                    description="<edge_key>:<edge_secret>, or - to use the body")])
    def post(self, request, edge_params: str):
        body = request.data if isinstance(request.data, dict) else {}
        if edge_params and edge_params != "-":
            key, sep, secret = edge_params.partition(":")
            if not sep or not key or not secret:
                raise Invalid("edgeParams: must be <edge_key>:<edge_secret>.", {"edgeParams": ["malformed"]})
            body = {**body, "edge_key": key, "edge_secret": secret}
        data = SettingsSerializer(data=body)
        data.is_valid(raise_exception=True)
        return _overwrite(data.validated_data)


def _repository_param(request, value: str | None) -> str:
    repository = (value or request.query_params.get("tag") or "").strip()
    if not repository:
        raise Invalid("tag: the image repository is required (e.g. ?tag=edgeproxy/camera).", {"tag": ["required"]})
    repository = split_image(repository)[0]
    if len(repository) > 255 or not REPOSITORY_RULE.fullmatch(repository):
        raise Invalid("tag: must be an image repository such as edgeproxy/camera or registry:5000/edgeproxy/camera.",
                      {"tag": ["not an image repository"]})
    return repository


def _pull_params(request) -> tuple[str, str]:
    """``?tag=<repo>&version=<ver>`` (or ``?tag=<repo>:<ver>``); both default to the camera image."""
    repository = (request.query_params.get("tag") or "").strip()
    version = (request.query_params.get("version") or "").strip()
    if repository and not version:
        repository, version = split_image(repository)
    default_repo, default_version = split_image(selectors.default_camera_image())
    if not repository:
        repository = default_repo
    if not version:
        if repository != default_repo:
            raise Invalid("version: the version (tag) to pull is required for an image other than the camera image.",
                          {"version": ["required"]})
        version = default_version
    if len(repository) > 255 or not REPOSITORY_RULE.fullmatch(repository):
        raise Invalid("tag: must be an image repository such as edgeproxy/camera or registry:5000/edgeproxy/camera.",
                      {"tag": ["not an image repository"]})
    if not TAG_RULE.fullmatch(version):
        raise Invalid("version: must be an image tag (letters, digits, '_', '.', '-'; at most 128).",
                      {"version": ["not an image tag"]})
    return repository, version


class LocalImages(APIView):
    @extend_schema(summary="Local versions of an image repository, per host (ImageUpgrade)",
                   responses={200: oas.ImageUpgradeSerializer}, parameters=oas.LOCAL_IMAGES_PARAMETERS)
    def get(self, request, image_name: str | None = None):
        repository = _repository_param(request, image_name)
        # Only a token that may change things makes the control plane call out (to the registry).
        return Response(selectors.image_upgrades(repository, process_selectors.hosts(),
                                                 ask_registry=may_change(request)))


class AllImages(APIView):
    @extend_schema(summary="Every local image of every host", responses={200: oas.LocalImageSerializer(many=True)})
    def get(self, request):
        return Response(selectors.all_images(process_selectors.hosts()))


class PullImage(APIView):
    changes_state = True  # a GET that pulls: read-only tokens get a 403

    @extend_schema(summary="Pull an image on edge hosts (one operation per host)",
                   responses={202: oas.PullResponseSerializer, **oas.errors(404)}, parameters=oas.PULL_PARAMETERS)
    def get(self, request):
        from processes import services as process_services

        repository, version = _pull_params(request)
        host_name = request.query_params.get("host") or None
        if host_name and process_selectors.host_by_name(host_name) is None:
            raise NotFound(f"No edge host named {host_name!r}.")
        ops = process_services.pull_image(repository, version, host_name)
        return Response({"operations": [process_selectors.operation_detail(op) for op in ops]}, status=202)
