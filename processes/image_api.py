"""Image routes: the image inventories of the edge hosts, and pulls on them (``pull`` operations)."""

import re

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from edgeproxy.api import schema as oas
from edgeproxy.api.errors import Invalid
from edgeproxy.api.permissions import may_change
from edgeproxy.contracts.names import REPOSITORY_RULE, TAG_RULE, split_image
from processes import outputs
from processes import selectors as process_selectors
from processes import services as process_services
from settings_app import selectors

# ?tag= and {image_name}: an image repository, optionally with :version, in at most 255 characters.
IMAGE_PARAMETER_RULE = re.compile(rf"(?:{REPOSITORY_RULE.pattern})(?::{TAG_RULE.pattern})?")
IMAGE_PARAMETER_MAX = 255


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
        repository, version = _pull_params(request)
        host_name = request.query_params.get("host") or None
        ops = process_services.pull_image(repository, version, host_name)
        return Response({"operations": outputs.TaskSerializer(ops, many=True).data}, status=202)
