"""Every route of the URLconf with a concrete sample path and the methods it answers, so that the
security tests cover routes added later without anyone listing them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern

_CONVERTER = re.compile(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>[^)]*)\)")
SAMPLE_UUID = "00000000-0000-4000-8000-000000000000"
WRITE_METHODS = ("post", "put", "patch", "delete")


@dataclass
class Route:
    template: str  # as written in the URLconf (joined through includes)
    path: str  # a concrete request path
    view: object  # the callback
    name: str

    @property
    def drf_class(self):
        return getattr(self.view, "cls", None)

    @property
    def methods(self) -> list[str]:
        """Methods the view answers (DRF and class-based views); GET for function views."""
        cls = getattr(self.view, "cls", None) or getattr(self.view, "view_class", None)
        if cls is None:
            return ["get"]
        initkwargs = getattr(self.view, "initkwargs", None) or getattr(self.view, "view_initkwargs", None) or {}
        allowed = initkwargs.get("http_method_names", cls.http_method_names)
        return [m for m in ("get", "post", "put", "patch", "delete") if m in allowed and hasattr(cls, m)]

    @property
    def is_api(self) -> bool:
        return self.drf_class is not None

    def changes_state(self, method: str) -> bool:
        return method in WRITE_METHODS or bool(getattr(self.drf_class, "changes_state", False))


def _sample(name: str, converter: str | None = None, body: str = "") -> str:
    if converter == "uuid" or name.endswith("_id") and converter == "uuid":
        return SAMPLE_UUID
    if converter == "int" or name in ("content_type_id",):
        return "1"
    if body and "|" in body and re.fullmatch(r"[\w|.-]+", body):
        return body.split("|")[0]  # admin's app_label alternatives
    if name == "edge_params":
        return "sample-key:sample-secret"
    return f"no-such-{name.replace('_', '-')}"


def _concrete(template: str) -> str:
    text = _REGEX_GROUP.sub(lambda m: _sample(m.group("name"), body=m.group("body")), template)
    text = _CONVERTER.sub(lambda m: _sample(m.group("name"), m.group("conv")), text)
    return "/" + text.replace("^", "").replace("$", "").replace("\\", "")


def _walk(patterns, prefix: str = ""):
    for pattern in patterns:
        part = str(pattern.pattern)
        if isinstance(pattern.pattern, RegexPattern):
            part = part.lstrip("^").rstrip("$") if isinstance(pattern, URLResolver) else part
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + part)
        elif isinstance(pattern, URLPattern):
            template = prefix + part
            yield Route(template, _concrete(template), pattern.callback, pattern.name or "")


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns))


def api_routes() -> list[Route]:
    return [r for r in all_routes() if r.is_api]


def sample_uuid() -> str:
    return str(uuid.UUID(SAMPLE_UUID))
