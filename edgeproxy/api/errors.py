"""The one error shape of the API: ``{"code": <status>, "message": "...", "errors": {...}}``.

Services raise domain errors (``edgeproxy.contracts.errors``), which know no HTTP; this module is
where each becomes a status code (``STATUS_CODES``). DRF's own exceptions and anything unexpected
are mapped here too, so no request ever answers a bare 500 or leaks a traceback, Docker's or
Python's raw text. Views raise the same domain errors (re-exported here for them).
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError
from django.http import Http404, JsonResponse
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework import exceptions
from rest_framework.response import Response

from edgeproxy.contracts.errors import (
    Busy,
    Conflict,
    DomainError,
    Forbidden,
    ImageNotOnHost,
    Invalid,
    NotFound,
    NotSupported,
    TimedOut,
    Unavailable,
)
from edgeproxy.policy import BROKER_DOWN_MESSAGE, DATABASE_DOWN_MESSAGE

__all__ = ["Busy", "Conflict", "DomainError", "Invalid", "NotFound", "NotSupported", "TimedOut", "Unavailable",
           "STATUS_CODES", "error_body", "exception_handler", "status_code_of"]

logger = logging.getLogger("edgeproxy.api")

# Each domain error's HTTP status (the most specific class first wins: subclasses map like their base).
STATUS_CODES: dict[type[DomainError], int] = {
    Invalid: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    NotSupported: 501,
    Unavailable: 503,
    TimedOut: 504,
}

READ_ONLY_MESSAGE = "This token may only read, not change anything."


def status_code_of(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 400


def api_message(exc: DomainError) -> str:
    """The sentence the API answers: the domain message, plus the API route that helps, if any."""
    if isinstance(exc, ImageNotOnHost):
        return (f"{exc.message.removesuffix('.')} (GET /api/v1/dockerpull?tag={exc.repository}"
                f"&version={exc.version}).")
    return exc.message


def error_body(code: int, message: str, errors: dict | None = None, **extra) -> dict:
    body = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def first_error_sentence(detail) -> tuple[str, dict]:
    """Turn DRF validation detail into (one sentence naming the field, {field: [messages]})."""
    if isinstance(detail, dict):
        errors = {field: [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
                  for field, msgs in detail.items()}
        field, messages = next(iter(errors.items()))
        if field == "non_field_errors":
            return messages[0], errors
        return f"{field}: {messages[0]}", errors
    if isinstance(detail, list) and detail:
        return str(detail[0]), {"non_field_errors": [str(d) for d in detail]}
    return str(detail), {}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        code = status_code_of(exc)
        return Response(error_body(code, api_message(exc), exc.errors, **exc.extra), status=code)
    if isinstance(exc, exceptions.ValidationError):
        message, errors = first_error_sentence(exc.detail)
        return Response(error_body(400, message, errors), status=400)
    if isinstance(exc, exceptions.ParseError):
        return Response(error_body(400, "The request body is not valid JSON."), status=400)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return Response(error_body(415, "Send JSON with Content-Type: application/json."), status=415)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response = Response(
            error_body(401, "Authentication required: send the header 'Authorization: Token <key>'."), status=401
        )
        response["WWW-Authenticate"] = "Token"
        return response
    if isinstance(exc, exceptions.PermissionDenied | DjangoPermissionDenied):
        return Response(error_body(403, READ_ONLY_MESSAGE), status=403)
    if isinstance(exc, Http404 | exceptions.NotFound):
        return Response(error_body(404, "Not found."), status=404)
    if isinstance(exc, exceptions.MethodNotAllowed):
        return Response(error_body(405, f"Method {context['request'].method} is not allowed here."), status=405)
    if isinstance(exc, exceptions.APIException):
        return Response(error_body(exc.status_code, str(exc.detail)), status=exc.status_code)
    if isinstance(exc, BrokerError | RedisConnectionError):
        logger.warning("broker unreachable: %s", exc)
        return Response(error_body(503, BROKER_DOWN_MESSAGE), status=503)
    if isinstance(exc, DatabaseError):
        logger.warning("database error: %s", exc)
        return Response(error_body(503, DATABASE_DOWN_MESSAGE), status=503)
    view = context.get("view")
    logger.exception("unexpected error in %s", view.__class__.__name__ if view else "view")
    return Response(error_body(500, "Internal error; the server log has the details."), status=500)


def json_404(request, exception=None):
    return JsonResponse(error_body(404, f"No route {request.path}."), status=404)


def json_500(request):
    return JsonResponse(error_body(500, "Internal error; the server log has the details."), status=500)


class BodySizeLimitMiddleware:
    """Refuse bodies over DATA_UPLOAD_MAX_MEMORY_SIZE with 413 before anything reads them.

    A chunked body (no Content-Length) is read here up to the limit: over it, 413; under it, the
    request goes on with the body it had, now with its length known.
    """

    def __init__(self, get_response):
        from django.conf import settings

        self.get_response = get_response
        self.limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > self.limit:
            if length <= self.DRAIN_LIMIT:
                self._drain(request, length)  # so the client reads our answer instead of a reset
            return self._too_large()
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            import io

            from django.core.handlers.wsgi import LimitedStream

            data = request.META["wsgi.input"].read(self.limit + 1)
            if len(data) > self.limit:
                return self._too_large()
            request.META["CONTENT_LENGTH"] = str(len(data))
            request._stream = LimitedStream(io.BytesIO(data), len(data))
        return self.get_response(request)

    # Bodies up to this size are read and dropped before answering 413; bigger ones are not read.
    DRAIN_LIMIT = 8 * 1024 * 1024

    @staticmethod
    def _drain(request, length: int) -> None:
        stream = request.META["wsgi.input"]
        while length > 0:
            chunk = stream.read(min(length, 64 * 1024))
            if not chunk:
                break
            length -= len(chunk)

    def _too_large(self):
        return JsonResponse(error_body(413, f"The request body is larger than {self.limit // 1024} KiB."), status=413)
