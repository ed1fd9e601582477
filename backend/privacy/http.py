"""Small HTTP helpers shared by the privacy routes: query parameters and response headers."""

from __future__ import annotations

from aiohttp import web

from backend.errors import BadRequest

PRIVATE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
"""Sent with anything that carries personal data or a link token: no caching, no referrer
leak of a token-bearing URL, no content sniffing."""


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
        raise BadRequest(f"{name} must be between {lo:g} and {hi:g}", code="invalid_query",
                         field=name)
    return value


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    return int(query_number(request, name, default, lo, hi))
