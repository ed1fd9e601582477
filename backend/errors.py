"""Errors the backend raises on purpose, and the one place that turns them into responses.

::

    ApiError                 every error a client may see: status, code, message
    ├── BadRequest           400  malformed or invalid input
    ├── Unauthorized         401  no or unknown credentials
    ├── Forbidden            403  known caller, not allowed
    ├── NotFound             404  no such object, or not yours (the two look the same)
    ├── Conflict             409  state does not allow it
    │   └── SettingFixed     409  a setting that cannot change while serving
    ├── RequestTimeout       408  the body did not arrive in time
    ├── Gone                 410  existed, expired or revoked
    ├── PayloadTooLarge      413
    ├── UnsupportedMediaType 415  a body in a charset or type the API does not take
    └── TooManyRequests      429

:class:`ConfigError` is not a response: the backend refuses to start (exit 2), for a setting
it refuses or a settings file or serve flag that cannot be used.

Anything else that escapes a handler is a bug: it is logged with a traceback and answered
with a 500 ``internal`` error that reveals nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from backend.logsafe import escape, redact

log = logging.getLogger("overheard.http")


class ConfigError(Exception):
    """The backend was started with a setting it refuses (e.g. a short admin token), or a
    settings file or serve flag that cannot be used: names the file or flag and the key."""


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a message for people."""

    status = 400
    default_code = "bad_request"

    def __init__(self, message: str, code: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.extra = extra

    def body(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, **self.extra}


class BadRequest(ApiError):
    """Malformed or invalid input."""

    status = 400
    default_code = "bad_request"


class Unauthorized(ApiError):
    """Missing or unknown credentials."""

    status = 401
    default_code = "unauthorized"


class Forbidden(ApiError):
    """The caller is known but may not do this."""

    status = 403
    default_code = "forbidden"


class NotFound(ApiError):
    """No such object, or it belongs to someone else."""

    status = 404
    default_code = "not_found"


class Conflict(ApiError):
    """The object's state does not allow the operation."""

    status = 409
    default_code = "conflict"


class SettingFixed(Conflict):
    """A setting that is fixed when the server starts (``PUT /v1/admin/config``)."""

    default_code = "setting_fixed"

    def __init__(self, key: str, current: object) -> None:
        super().__init__(f"{key}: fixed when the server starts (now {current}); it cannot "
                         "change while serving", field=key)
        self.key = key


class RequestTimeout(ApiError):
    """The request body did not arrive within the configured time (slow or stalled client)."""

    status = 408
    default_code = "body_timeout"


class Gone(ApiError):
    """The object existed but has expired or been revoked."""

    status = 410
    default_code = "gone"


class PayloadTooLarge(ApiError):
    """The body or stream exceeds a configured limit."""

    status = 413
    default_code = "too_large"


class UnsupportedMediaType(ApiError):
    """The body is declared in a charset or media type the API does not read."""

    status = 415
    default_code = "unsupported_media_type"


class TooManyRequests(ApiError):
    """Rate or attempt limit reached."""

    status = 429
    default_code = "too_many_requests"


def json_error(status: int, code: str, message: str, **extra: object) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"error": code, "message": message, **extra}),
        content_type="application/json",
    )


def loggable_path(request: web.Request) -> str:
    """The request's path as it may be logged: secrets redacted (the router may refuse a
    token-bearing path, 404 or 405, before any handler could), control characters escaped."""
    return escape(redact(request.path))


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Translate :class:`ApiError` and aiohttp's own HTTP errors into the JSON error shape."""
    try:
        return await handler(request)
    except ApiError as exc:
        log.info("%s %s -> %d %s: %s", request.method, loggable_path(request), exc.status, exc.code, exc.message)
        resp = json_error(exc.status, exc.code, exc.message, **exc.extra)
        if "retry_after" in exc.extra:  # RFC 9110: how long to wait, in seconds
            resp.headers["Retry-After"] = str(exc.extra["retry_after"])
        if exc.status == 408:
            resp.force_close()  # the rest of a stalled body is not worth waiting for
        return resp
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
        }.get(exc.status, "http_error")
        log.info("%s %s -> %d %s", request.method, loggable_path(request), exc.status, code)
        resp = json_error(exc.status, code, exc.reason or code)
        if "Allow" in exc.headers:  # a 405 must say what is allowed (RFC 9110)
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:
        log.exception("unhandled error in %s %s", request.method, loggable_path(request))
        return json_error(500, "internal", "internal error; this is a bug in overheard")
