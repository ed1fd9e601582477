"""Request parsing shared by every route module: JSON bodies, query parameters, and the
headers sent with anything that carries personal data."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, TypeVar

from aiohttp import HttpVersion11, web
from pydantic import BaseModel, ConfigDict, ValidationError

from backend.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    json_error,
    loggable_path,
)
from backend.keys import CONFIG

log = logging.getLogger("overheard.http")

MAX_BODY = 1024 * 1024
"""Largest request body the API reads, in bytes (the app's ``client_max_size``)."""

M = TypeVar("M", bound=BaseModel)

PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
"""Sent with anything that carries personal data or a link token: no caching, no referrer
leak of a token-bearing URL, no content sniffing."""


class Strict(BaseModel):
    """Base for request bodies: unknown keys are an error."""

    # Strict: JSON ``0`` is not ``false`` and ``false`` is not ``0.0``; a body means what the
    # spec says or it is refused.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=True)


def declared_too_large(request: web.Request) -> str | None:
    """Why the body the request declares (Content-Length) is over :data:`MAX_BODY`, or None."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return f"request body of {length} bytes; at most {MAX_BODY} are read"
    return None


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """Answer ``Expect: 100-continue`` by the declared length: a body over :data:`MAX_BODY`
    gets its 413 before the client sends it (and the connection closes, since the body
    never comes); anything else gets ``100 Continue``."""
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        resp = json_error(417, "expectation_failed", f"unknown Expect: {expect[:64]!r}")
        resp.force_close()
        return resp
    too_large = declared_too_large(request)
    if too_large is not None:
        log.info("%s %s -> 413 too_large (declared, before the body)", request.method,
                 loggable_path(request))
        resp = json_error(413, "too_large", too_large)
        resp.force_close()
        return resp
    if request.version == HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the response proper has not started
    return None


class Routes(web.RouteTableDef):
    """``web.RouteTableDef`` whose routes answer ``Expect: 100-continue`` with
    :func:`expect_continue`."""

    def route(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("expect_handler", expect_continue)
        return super().route(method, path, **kwargs)


JSON_CHARSETS = frozenset({"utf-8", "utf8"})


def load_json(data: bytes) -> Any:
    """Parse a JSON body; every way it can be unacceptable is a 400 ``malformed_json``."""
    try:
        return json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}", code="malformed_json") from None
    except RecursionError:  # the stdlib parser recurses per nesting level
        raise BadRequest("body nests too deeply", code="malformed_json") from None
    except ValueError as exc:  # an integer beyond the interpreter's digit limit
        raise BadRequest(f"body is not acceptable JSON: {exc}", code="malformed_json") from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    """Read a JSON body into ``model``; every problem becomes a 400 naming the field."""
    too_large = declared_too_large(request)
    if too_large is not None:
        # Refused before a byte of it is read (the server then reads and drops the rest,
        # so the client can finish sending and see this answer).
        raise PayloadTooLarge(too_large)
    charset = (request.charset or "utf-8").lower()
    if charset not in JSON_CHARSETS:
        # JSON is UTF-8 (RFC 8259); a declared charset Python does not even know would
        # otherwise escape the decoder as a LookupError.
        raise UnsupportedMediaType(f"charset {charset[:40]!r}: JSON bodies are UTF-8",
                                   code="unsupported_charset")
    try:
        # A client that trickles its body must not hold a handler forever (slowloris).
        async with asyncio.timeout(request.app[CONFIG].body_timeout):
            data = await request.read()
    except TimeoutError:
        raise RequestTimeout("the request body did not arrive in time",
                             code="body_timeout") from None
    raw = load_json(data)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}", code="invalid_field", field=where) from None


def query_number(request: web.Request, name: str, default: float, lo: float, hi: float,
                 *, integer: bool = True) -> float:
    """A numeric query parameter within ``[lo, hi]``; a 400 naming it otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value: float = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise BadRequest(f"{name} must be {kind}", code="invalid_query", field=name) from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}", code="invalid_query",
                         field=name)
    return value


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within ``[lo, hi]``; a 400 naming it otherwise."""
    return int(query_number(request, name, default, lo, hi))
