"""Times on the wire and in packages: RFC 3339, UTC, milliseconds, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(ts: datetime) -> str:
    """Format an aware datetime as RFC 3339 with millisecond precision and a ``Z``."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """Parse RFC 3339 (``Z`` or an offset); a naive time is an error."""
    ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if ts.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return ts.astimezone(UTC)
