"""OpenAPI 3 description of the API (drf-spectacular): the shapes the routes answer, and the errors.

The records the routes answer (camera, operation, task, edge host, annotation, settings) have one
definition each, in ``processes.outputs`` and ``settings_app.outputs``: the views render with them
and declare them as their responses. The serializers here only *describe* the other bodies for the
schema (``/api/schema/``, ``/api/docs/``). Views declare their success responses with
``extend_schema``; ``AutoSchema`` adds to every operation the errors it can answer
(``{"code", "message", "errors"}``), so a new route cannot forget them:

* 401 on every route (no or bad token), 503 on every route (database or broker unreachable),
  414 on every route (a URL over gunicorn's 4094-byte request line);
* 403 on every route that changes something (read-only tokens);
* 404 on routes with a path parameter (unknown camera, host, task);
* 400, 413 (body over 64 KiB) and 415 on routes that take a body; 400 on routes with query parameters;
* routes that queue an operation (``processes.api.OperationView``) answer the camera record:
  ``202`` queued, ``200`` ended within ``?wait=N``, ``504`` still running after it; ``404`` for an
  unknown camera and ``409`` for a busy one.
"""

from __future__ import annotations

import re

from drf_spectacular import openapi
from drf_spectacular.drainage import warn
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer
from rest_framework import serializers

from edgeproxy.contracts.events import EVENT_TYPES
from edgeproxy.contracts.names import CAMERA_NAME_RULE, IMAGE_RULE, REGISTRY_URL_RULE, TAG_RULE
from processes.events import webhooks
from processes.outputs import OperationSerializer, StreamProcessSerializer, TaskSerializer

# --- errors ----------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField(help_text="the HTTP status")
    message = serializers.CharField(help_text="one clear sentence; names the field for a 400")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text="validation errors: field -> messages (400 only)",
    )

    class Meta:
        ref_name = "Error"


ERROR_TEXT = {
    400: "Invalid input: the message names the field and the rule; nothing was changed.",
    401: "No token, or an unknown one: send 'Authorization: Token <key>'.",
    403: "The token is read-only: it may list and read, not change anything.",
    404: "No such camera, host, task or image.",
    405: "Method not allowed on this route.",
    409: "Conflict: the name exists already, the camera is busy with another operation, or apps read the camera "
         "(a move or delete: `apps` names them).",
    413: "The request body is larger than 64 KiB.",
    414: "The URL (with its query) is longer than 4094 bytes.",
    415: "The body is not JSON (send Content-Type: application/json).",
    501: "Not available in this version.",
    503: "No edge host online, an edge frame server unreachable, or the database or broker down; nothing was changed.",
    504: "The operation had not ended within ?wait=N seconds (the body is the record as it is).",
}


def error(code: int, description: str | None = None) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description or ERROR_TEXT[code])


def errors(*codes: int) -> dict:
    return {code: error(code) for code in codes}


# --- the camera record (StreamProcess) -------------------------------------------------------
# StreamProcessSerializer, OperationSerializer and TaskSerializer are processes/outputs.py's: the
# routes answer with them, so the answers and this document have one definition.

class DeletedProcessSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["deleted"])
    operation = OperationSerializer(allow_null=True)

    class Meta:
        ref_name = "DeletedProcess"


StreamProcessOrDeleted = PolymorphicProxySerializer(
    component_name="StreamProcessOrDeleted",
    serializers=[StreamProcessSerializer, DeletedProcessSerializer],
    resource_type_field_name=None,
)


def operation_responses(body=StreamProcessSerializer) -> dict:
    """What a route that queues an operation answers."""
    return {
        202: OpenApiResponse(body, description="Queued: the record with status pending and the operation."),
        200: OpenApiResponse(body, description="With ?wait=N: the operation ended (succeeded or failed) in time."),
        504: OpenApiResponse(body, description="With ?wait=N: still running after N seconds; the record as it is."),
        **errors(409),
    }


WAIT_PARAMETER = OpenApiParameter(
    "wait", {"type": "number", "minimum": 0, "maximum": 60}, OpenApiParameter.QUERY, required=False,
    description="seconds (0 to 60) to wait for the operation to end: 200 when it did, 504 when not",
)

# --- hosts, tasks, settings, images, annotations ----------------------------------------------


class PullResponseSerializer(serializers.Serializer):
    operations = TaskSerializer(many=True)

    class Meta:
        ref_name = "PullOperations"


class HostImageVersionSerializer(serializers.Serializer):
    tag = serializers.CharField()
    id = serializers.CharField(allow_null=True)
    size = serializers.IntegerField(allow_null=True)
    created = serializers.CharField(allow_null=True, help_text="RFC 3339")

    class Meta:
        ref_name = "HostImageVersion"


class HostImageUpgradeSerializer(serializers.Serializer):
    host = serializers.CharField()
    name = serializers.CharField()
    has_image = serializers.BooleanField()
    current_version = serializers.CharField(allow_null=True)
    highest_remote_version = serializers.CharField(allow_null=True)
    has_upgrade = serializers.BooleanField(allow_null=True, help_text="null: no registry answered")
    camera_type = serializers.CharField()
    local_versions = serializers.ListField(child=serializers.CharField())
    images = HostImageVersionSerializer(many=True, required=False)

    class Meta:
        ref_name = "HostImageUpgrade"


class ImageUpgradeSerializer(serializers.Serializer):
    name = serializers.CharField()
    has_image = serializers.BooleanField()
    current_version = serializers.CharField(allow_null=True)
    highest_remote_version = serializers.CharField(allow_null=True, help_text="null: no registry answered")
    has_upgrade = serializers.BooleanField(allow_null=True, help_text="null: no registry answered")
    camera_type = serializers.CharField()
    registry = serializers.CharField(allow_null=True, required=False, help_text="the registry asked, if any")
    remote_versions = serializers.ListField(child=serializers.CharField(), allow_null=True, required=False)
    hosts = HostImageUpgradeSerializer(many=True)

    class Meta:
        ref_name = "ImageUpgrade"


class LocalImageSerializer(serializers.Serializer):
    Host = serializers.CharField()
    Id = serializers.CharField(allow_null=True)
    RepoTags = serializers.ListField(child=serializers.CharField())
    Size = serializers.IntegerField(allow_null=True)
    Created = serializers.IntegerField(allow_null=True, help_text="unix seconds")
    CreatedAt = serializers.CharField(allow_null=True, required=False, help_text="RFC 3339")

    class Meta:
        ref_name = "LocalImage"


def ecma_pattern(rule: re.Pattern, optional: bool = False) -> str:
    """A Python rule checked with ``fullmatch`` as an OpenAPI (ECMA 262) pattern; ``optional``: or empty."""
    body = rule.pattern.replace(r"\x", r"\u00")
    return f"^(?:{body})?$" if optional else f"^(?:{body})$"


def query(name: str, type_=OpenApiTypes.STR, description: str = "", minimum=None, maximum=None,
          required: bool = False, pattern: re.Pattern | None = None, max_length: int | None = None) -> OpenApiParameter:
    if minimum is not None or maximum is not None:
        type_ = {"type": "integer" if type_ == OpenApiTypes.INT else "number"}
        type_.update({k: v for k, v in (("minimum", minimum), ("maximum", maximum)) if v is not None})
    elif pattern is not None:  # an empty optional parameter counts as absent
        type_ = {"type": "string", "pattern": ecma_pattern(pattern, optional=not required)}
        if required:
            type_["minLength"] = 1
        if max_length is not None:
            type_["maxLength"] = max_length
    return OpenApiParameter(name, type_, OpenApiParameter.QUERY, required=required, description=description)


def path(name: str, pattern: re.Pattern, description: str = "", max_length: int | None = None) -> OpenApiParameter:
    schema = {"type": "string", "pattern": ecma_pattern(pattern)}
    if max_length is not None:
        schema["maxLength"] = max_length
    return OpenApiParameter(name, schema, OpenApiParameter.PATH, description=description)


JPEG_RESPONSES = {
    (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="the newest frame, JPEG"),
    **errors(503, 504),
}

# --- request examples (Swagger UI; schemathesis sends them in its examples phase) ------------


def request_example(name: str, value: dict) -> list[OpenApiExample]:
    return [OpenApiExample(name, value=value, request_only=True)]


CONNECT_EXAMPLES = request_example("connect", {"name": "front-door",
                                               "rtsp_endpoint": "rtsp://user:pass@192.168.1.20/stream"})
MOVE_EXAMPLES = request_example("move", {"host": "edge-2"})
NAME_EXAMPLES = request_example("start", {"name": "front-door"})
UPGRADE_EXAMPLES = request_example("upgrade", {"name": "front-door", "newer_version": "0.0.10"})
SETTINGS_EXAMPLES = request_example("settings", {"camera_image": "edgeproxy/camera:0.1.0"})

# --- the schema class ------------------------------------------------------------------------

_BODY_METHODS = ("POST", "PUT", "PATCH")


def _changes_state(view, method: str) -> bool:
    return method not in ("GET", "HEAD", "OPTIONS") or bool(getattr(view, "changes_state", False))


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema plus the errors every route can answer (see the module doc)."""

    def _is_operation_view(self) -> bool:
        # Views say so themselves (processes.api.OperationView): this module imports no view.
        return bool(getattr(self.view, "queues_operation", False))

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if self._is_operation_view() and self.method in ("POST", "DELETE", "PATCH", "PUT"):
            parameters.append(WAIT_PARAMETER)
        return parameters

    def _has_serializer(self) -> bool:
        return hasattr(self.view, "get_serializer") or getattr(self.view, "serializer_class", None) is not None

    def get_operation_id(self):
        """Unique per route and method, also for the original routes that alias documented ones."""
        path = self.path[len("/api/v1/"):] if self.path.startswith("/api/v1/") else self.path
        slug = re.sub(r"[^A-Za-z0-9]+", "_", path.replace("{", "by_")).strip("_")
        return f"{self.method.lower()}_{slug}" + ("_slash" if path.endswith("/") and path != "/" else "")

    def get_request_serializer(self):
        # Only reached when a view did not declare its body: plain APIViews then take none.
        return super().get_request_serializer() if self._has_serializer() else None

    def get_response_serializers(self):
        # Only reached when a view did not declare responses with extend_schema.
        if self._is_operation_view() and self.method != "GET":
            return operation_responses(StreamProcessOrDeleted if self.method == "DELETE" else StreamProcessSerializer)
        if not self._has_serializer():
            warn(f"{self.view.__class__.__name__}.{self.method.lower()} ({self.path}): declare its responses "
                 "with extend_schema(responses=...) (see edgeproxy/api/schema.py)")
            return {200: OpenApiResponse(OpenApiTypes.OBJECT, description="undocumented")}
        return super().get_response_serializers()

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        wanted = {401, 414, 503}
        if _changes_state(self.view, self.method):
            wanted.add(403)
        if "{" in self.path:
            wanted.add(404)
        if self.method in _BODY_METHODS:
            wanted.update((400, 413, 415))
        if any(p.get("in") == "query" or "pattern" in p.get("schema", {}) for p in self._get_parameters()):
            wanted.add(400)  # a query parameter, or a path parameter with a rule, can be invalid
        if self._is_operation_view() and self.method != "GET":
            wanted.update((404, 409))  # the camera (in the path or the body) is unknown, or busy
        for code in sorted(wanted):
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(error(code), str(code), direction=direction)
        if self.method == "GET":  # django.middleware.http.ConditionalGetMiddleware
            responses.setdefault("304", {"description": "Not Modified: If-None-Match named the answer's ETag."})
        return dict(sorted(responses.items()))


ANNOTATION_PARAMETERS = [
    query("camera", description="only this camera's events"),
    query("type", description="only events of this type"),
    query("from", OpenApiTypes.INT, "start_timestamp at or after (ms since epoch)", minimum=0),
    query("to", OpenApiTypes.INT, "start_timestamp at or before (ms since epoch)", minimum=0),
    query("limit", OpenApiTypes.INT, "at most this many, newest first (default 1000)", minimum=1, maximum=10000),
]


# After the scheme of an RTSP or RTMP URL: a host first (user:password@ allowed), no white space or
# control characters anywhere (processes.api._check_url). Python's white space also has U+0085.
# In the user and host part, urlsplit refuses brackets outside an IPv6 address and the characters
# whose NFKC form holds / ? # @ or : (these 19, found with unicodedata over every code point).
_NOT_SPACE = r"\s\u0000-\u001f\u007f\u0085"
_NETLOC_REFUSED = r"\[\]\u2047-\u2049\u2100\u2101\u2105\u2106\u2a74\ufe13\ufe16\ufe55\ufe56\ufe5f\ufe6b" \
                  r"\uff03\uff0f\uff1a\uff1f\uff20"
_URL_REST = rf"(?:[^{_NOT_SPACE}@/?#:{_NETLOC_REFUSED}]+(?::[^{_NOT_SPACE}@/?#{_NETLOC_REFUSED}]*)?@)?" \
            rf"[^{_NOT_SPACE}@/?#:{_NETLOC_REFUSED}]+(?::[0-9]{{0,4}})?(?:[/?#][^{_NOT_SPACE}]*)?"

# A webhook's URL after its scheme: a host (no user:password@), an optional port, then anything but white space.
_WEBHOOK_URL_REST = rf"[^{_NOT_SPACE}@/?#:{_NETLOC_REFUSED}]+(?::[0-9]{{0,4}})?(?:[/?#][^{_NOT_SPACE}]*)?"


def document_rules(result, generator, request, public):
    """Postprocessing hook: the validation rules of request fields that serializers cannot express
    (camera names, RTSP URLs), so clients and fuzzers see them."""
    schemas = result.get("components", {}).get("schemas", {})
    for component in schemas.values():
        properties = component.get("properties") or {}
        if ((component is schemas.get("ConnectRequest") or component is schemas.get("NameRequest"))
                and "name" in properties):
            properties["name"].setdefault("pattern", f"^{CAMERA_NAME_RULE.pattern}$")
        if component is schemas.get("ConnectRequest"):  # schemes in any case (see processes.api._check_url)
            if "rtsp_endpoint" in properties:
                properties["rtsp_endpoint"].update({"pattern": f"^[Rr][Tt][Ss][Pp][Ss]?://{_URL_REST}$",
                                                    "maxLength": 2048})
            if "rtmp_endpoint" in properties:
                properties["rtmp_endpoint"].update({"pattern": f"^(?:[Rr][Tt][Mm][Pp][Ss]?://{_URL_REST})?$",
                                                    "maxLength": 2048})
    # Webhooks (processes.events.webhooks.check_url / check_secret / check_event_types): an http(s) URL
    # with a host and no credentials, a printable ASCII secret, known event types. An address written
    # in the URL may still be refused (a private network): the schema cannot say which are allowed.
    for name in ("WebhookInputRequest", "WebhookPatchRequest"):
        properties = schemas.get(name, {}).get("properties", {})
        if "url" in properties:
            properties["url"].update({"pattern": f"^[Hh][Tt][Tt][Pp][Ss]?://{_WEBHOOK_URL_REST}$",
                                      "maxLength": webhooks.URL_MAX})
        if "secret" in properties:
            properties["secret"].update({"pattern": ecma_pattern(webhooks.SECRET_RULE),
                                         "minLength": webhooks.SECRET_MIN, "maxLength": webhooks.SECRET_MAX})
        if "event_types" in properties:
            properties["event_types"]["items"] = {"type": "string", "enum": list(EVENT_TYPES)}
    # Optional strings where "" means "not given": the rule or nothing.
    optional_rules = {
        "ConnectRequest": {"image_tag": IMAGE_RULE},
        "UpgradeRequest": {"image_tag": IMAGE_RULE, "newer_version": TAG_RULE},
        "SettingsRequest": {"camera_image": IMAGE_RULE, "registry_url": REGISTRY_URL_RULE},
    }
    for name, rules in optional_rules.items():
        properties = schemas.get(name, {}).get("properties", {})
        for field, rule in rules.items():
            if field in properties:
                properties[field]["pattern"] = ecma_pattern(rule, optional=True)
    # DRF refuses NUL in every string it reads (PostgreSQL cannot store it), and a string that must
    # not be blank cannot be white space only (DRF trims it first): say so where no rule does.
    for name, component in schemas.items():
        if name.endswith("Request"):
            for prop in (component.get("properties") or {}).values():
                if prop.get("type") == "string" and "pattern" not in prop and "enum" not in prop:
                    blank_allowed = not prop.get("minLength")
                    prop["pattern"] = "^[^\\u0000]*$" if blank_allowed else "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
    return result
