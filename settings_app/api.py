"""Settings and image routes."""

import re

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


# ?tag= and {image_name}: an image repository, optionally with :version, in at most 255 characters.
IMAGE_PARAMETER_RULE = re.compile(rf"(?:{REPOSITORY_RULE.pattern})(?::{TAG_RULE.pattern})?")
IMAGE_PARAMETER_MAX = 255
# The registry asked for newer versions: scheme, host and port only (no credentials, no path).
_PORT = r"(?:[0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
REGISTRY_URL_RULE = re.compile(rf"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::{_PORT})?/?")
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
        from settings_app.registry import check_registry_url

        if value and not REGISTRY_URL_RULE.fullmatch(value):
            raise serializers.ValidationError("must be an http:// or https:// URL with a host (and port) only.")
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
                   examples=oas.SETTINGS_EXAMPLES,
                   responses={200: oas.SettingsResponseSerializer})
    def post(self, request):
        data = SettingsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _overwrite(data.validated_data)


class SettingsOverwrite(APIView):
    """``POST /settings/overwrite/<edge_key>:<edge_secret>``, or the same values as a JSON body."""

    @extend_schema(request=SettingsSerializer, summary="Overwrite the edge key and secret (documented route)",
                   responses={200: oas.SettingsResponseSerializer},
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


def _image_param(value: str) -> str:
    if len(value) > IMAGE_PARAMETER_MAX or not IMAGE_PARAMETER_RULE.fullmatch(value):
        raise Invalid("tag: must be an image repository such as edgeproxy/camera or registry:5000/edgeproxy/camera "
                      f"(optionally :version; at most {IMAGE_PARAMETER_MAX} characters).",
                      {"tag": ["not an image repository"]})
    return value


def _repository_param(request, value: str | None) -> str:
    image = value or request.query_params.get("tag") or ""
    if not image:
        raise Invalid("tag: the image repository is required (e.g. ?tag=edgeproxy/camera).", {"tag": ["required"]})
    return split_image(_image_param(image))[0]


def _pull_params(request) -> tuple[str, str]:
    """``?tag=<repo>&version=<ver>`` (or ``?tag=<repo>:<ver>``); both default to the camera image's,
    and the version of another repository to ``latest`` (as ``docker pull`` does)."""
    repository = _image_param(request.query_params.get("tag") or "") if request.query_params.get("tag") else ""
    version = request.query_params.get("version") or ""
    if repository and not version:
        repository, version = split_image(repository)
    elif repository:
        repository = split_image(repository)[0]
    default_repo, default_version = split_image(selectors.default_camera_image())
    if not repository:
        repository = default_repo
    if not version:
        version = default_version if repository == default_repo and default_version else "latest"
    if len(repository) > 255 or not REPOSITORY_RULE.fullmatch(repository):
        raise Invalid("tag: must be an image repository such as edgeproxy/camera or registry:5000/edgeproxy/camera.",
                      {"tag": ["not an image repository"]})
    if not TAG_RULE.fullmatch(version):
        raise Invalid("version: must be an image tag (letters, digits, '_', '.', '-'; at most 128).",
                      {"version": ["not an image tag"]})
    return repository, version


class LocalImages(APIView):
    """``/settings/dockerimageslocally/{image_name}``."""

    @extend_schema(summary="Local versions of an image repository, per host (ImageUpgrade)",
                   responses={200: oas.ImageUpgradeSerializer},
                   parameters=[oas.path("image_name", IMAGE_PARAMETER_RULE, "image repository, optionally :version",
                                        max_length=IMAGE_PARAMETER_MAX)])
    def get(self, request, image_name: str | None = None):
        repository = _repository_param(request, image_name)
        # Only a token that may change things makes the control plane call out (to the registry).
        return Response(selectors.image_upgrades(repository, process_selectors.hosts(),
                                                 ask_registry=may_change(request)))


class LocalImagesByTag(LocalImages):
    """``/devicedockerimages?tag=<repository>``."""

    @extend_schema(summary="Local versions of an image repository, per host (ImageUpgrade)",
                   responses={200: oas.ImageUpgradeSerializer},
                   parameters=[oas.query("tag", description="image repository, optionally :version", required=True,
                                         pattern=IMAGE_PARAMETER_RULE, max_length=IMAGE_PARAMETER_MAX)])
    def get(self, request):
        return super().get(request)


class AllImages(APIView):
    @extend_schema(summary="Every local image of every host", responses={200: oas.LocalImageSerializer(many=True)})
    def get(self, request):
        return Response(selectors.all_images(process_selectors.hosts()))


class PullImage(APIView):
    changes_state = True  # a GET that pulls: read-only tokens get a 403

    @extend_schema(summary="Pull an image on edge hosts (one operation per host)",
                   responses={202: oas.PullResponseSerializer, **oas.errors(404)},
                   parameters=[oas.query("tag", description="image repository, optionally :version (default: the "
                                         "configured camera image's)", pattern=IMAGE_PARAMETER_RULE,
                                         max_length=IMAGE_PARAMETER_MAX),
                               oas.query("version", description="image version (default: the camera image's for its "
                                         "repository, else latest)", pattern=TAG_RULE),
                               oas.query("host", description="only this edge host (default: every online host)")])
    def get(self, request):
        from processes import services as process_services

        repository, version = _pull_params(request)
        host_name = request.query_params.get("host") or None
        if host_name and process_selectors.host_by_name(host_name) is None:
            raise NotFound(f"No edge host named {host_name!r}.")
        ops = process_services.pull_image(repository, version, host_name)
        return Response({"operations": [process_selectors.operation_detail(op) for op in ops]}, status=202)
