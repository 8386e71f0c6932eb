"""The one error shape of the API: ``{"code": <status>, "message": "...", "errors": {...}}``.

Services raise ``ApiError`` subclasses; DRF's own exceptions and anything unexpected are mapped
here, so no request ever answers a bare 500 or leaks a traceback, Docker's or Python's raw text.
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError
from django.http import Http404, JsonResponse
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger("edgeproxy.api")


class ApiError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, errors: dict | None = None, status_code: int | None = None, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.extra = extra or {}
        if status_code is not None:
            self.status_code = status_code


class Invalid(ApiError):
    status_code = 400


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class Unavailable(ApiError):
    status_code = 503


class NotImplementedYet(ApiError):
    status_code = 501


def error_body(code: int, message: str, errors: dict | None = None, **extra) -> dict:
    body = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def _first_error_sentence(detail) -> tuple[str, dict]:
    """Turn DRF validation detail into (one sentence naming the field, {field: [messages]})."""
    if isinstance(detail, dict):
        errors = {field: [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])] for field, msgs in detail.items()}
        field, messages = next(iter(errors.items()))
        if field == "non_field_errors":
            return messages[0], errors
        return f"{field}: {messages[0]}", errors
    if isinstance(detail, list) and detail:
        return str(detail[0]), {"non_field_errors": [str(d) for d in detail]}
    return str(detail), {}


def exception_handler(exc, context):
    if isinstance(exc, ApiError):
        return Response(error_body(exc.status_code, exc.message, exc.errors, **exc.extra), status=exc.status_code)
    if isinstance(exc, exceptions.ValidationError):
        message, errors = _first_error_sentence(exc.detail)
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
        return Response(error_body(403, "This token may only read, not change anything."), status=403)
    if isinstance(exc, Http404 | exceptions.NotFound):
        return Response(error_body(404, "Not found."), status=404)
    if isinstance(exc, exceptions.MethodNotAllowed):
        return Response(error_body(405, f"Method {context['request'].method} is not allowed here."), status=405)
    if isinstance(exc, exceptions.APIException):
        return Response(error_body(exc.status_code, str(exc.detail)), status=exc.status_code)
    if isinstance(exc, BrokerError | RedisConnectionError):
        logger.warning("broker unreachable: %s", exc)
        return Response(error_body(503, "The message broker (Redis) is unreachable; nothing was changed. Try again."), status=503)
    if isinstance(exc, DatabaseError):
        logger.warning("database error: %s", exc)
        return Response(error_body(503, "The database is unreachable or busy; try again."), status=503)
    logger.exception("unexpected error in %s", context.get("view").__class__.__name__ if context.get("view") else "view")
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
