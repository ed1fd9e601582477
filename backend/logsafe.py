"""What may reach the log: secrets redacted by pattern, control characters escaped.

A link token, a bearer token or an admin token must never be written to a log, wherever it
turns up: in a path the router refused (``//v1/privacy/downloads/TOKEN``, ``/V1/...``), in
aiohttp's own error line for a request line too long to parse, in an exception's text.
Handlers name things by id, but the log cannot rely on every caller being careful, so
:class:`SafeLogFilter` rewrites every record on the handlers it is installed on: the
message and any traceback pass through :func:`redact`, and the message through
:func:`escape`, so a ``%0A`` in a path cannot forge a log line of its own.
"""

from __future__ import annotations

import logging
import re
import traceback

REDACTED = "<redacted>"

SECRET_PATH_PREFIXES: set[str] = set()
"""Paths whose remainder is a secret (a download link token). Route modules add theirs."""

_TOKENS = [
    # A signed link token: 24 + 43 base64url characters around a dot.
    re.compile(r"[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{43}"),
    # Bearer secrets as the backend issues them (adm_, usr_, dvt_, opt_, prt_ + 32 bytes).
    re.compile(r"\b(?:adm|usr|dvt|opt|prt)_[A-Za-z0-9_-]{16,}"),
    # Whatever follows "Bearer" in a header someone logged.
    re.compile(r"(?i)(?<=bearer )[^\s'\"]+"),
]


def _path_pattern(prefix: str) -> re.Pattern[str]:
    """``prefix`` as the router might have seen it: any case, doubled slashes, then the
    secret up to the next space, quote or query."""
    parts = [re.escape(p) for p in prefix.strip("/").split("/")]
    return re.compile("(?i)(/+" + "/+".join(parts) + r"/+)[^\s'\"?#]+")


def redact(text: str) -> str:
    """``text`` with every token-shaped secret and every secret path remainder replaced."""
    for prefix in sorted(SECRET_PATH_PREFIXES):
        text = _path_pattern(prefix).sub(r"\1" + REDACTED, text)
    for pattern in _TOKENS:
        text = pattern.sub(REDACTED, text)
    return text


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    r"""Control characters (newlines included) as ``\xNN`` / ``\uNNNN``: one record, one line."""
    return _CONTROL.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                   else f"\\u{ord(m.group()):04x}"), text)


class SafeLogFilter(logging.Filter):
    """Redact and escape every record before a handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = escape(redact(message)), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put :class:`SafeLogFilter` on every handler of ``logger`` (default: the root)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SafeLogFilter) for f in handler.filters):
            handler.addFilter(SafeLogFilter())
