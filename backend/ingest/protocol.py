"""Parsing the device stream's text frames into the messages of :mod:`contract.stream`.

Parsing never raises anything but :class:`ProtocolError`, whose ``code`` is the error code
the device receives (``malformed_json``, ``unknown_type``, ``invalid_uuid``,
``unsupported_format``, ``transcript_too_long``, ``invalid_text``, ``invalid_field``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from contract.audio import is_supported
from contract.stream import (
    FORMAT,
    LOCALE_PATTERN,
    MAX_TRANSCRIPT_BYTES,
    UUID_RE,
    DeviceMessage,
    ErrorCode,
    UtteranceEnd,
    UtteranceStart,
)

# Error types pydantic reports for the whole frame rather than for a field.
_FRAME_NOT_OBJECT = {"model_type", "dict_type", "model_attributes_type"}
_UNKNOWN_TYPE = {"union_tag_invalid", "union_tag_not_found"}
_CUSTOM_CODES = {"invalid_uuid", "unsupported_format", "transcript_too_long", "invalid_text"}


class ProtocolError(Exception):
    """A frame the server cannot accept; ``code`` is what the device is told."""

    def __init__(self, code: ErrorCode, message: str, utterance_id: str | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.utterance_id = utterance_id
        self.kind = kind
        """The frame's ``type`` when it was a known one, so the stream knows what broke."""


_DEVICE_MESSAGE: TypeAdapter[UtteranceStart | UtteranceEnd] = TypeAdapter(DeviceMessage)


def _loads(text: str | bytes) -> Any:
    # The stdlib parser keeps lone surrogates (``"\ud800"``) so that they are reported as
    # invalid text rather than as malformed JSON.
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.MALFORMED_JSON, f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.MALFORMED_JSON, "frame nests too deeply") from None
    except ValueError as exc:  # e.g. an integer beyond the interpreter's digit limit
        raise ProtocolError(ErrorCode.MALFORMED_JSON, f"frame is not acceptable JSON: {exc}") from None


def _utterance_id_of(data: Any) -> str | None:
    if isinstance(data, dict):
        value = data.get("utterance_id")
        if isinstance(value, str) and UUID_RE.match(value):
            return value.lower()
    return None


def _validate(data: Any, max_transcript_bytes: int) -> UtteranceStart | UtteranceEnd:
    context = {"max_transcript_bytes": max_transcript_bytes}
    try:
        return _DEVICE_MESSAGE.validate_python(data, context=context)
    except ValidationError as exc:
        raise _protocol_error(exc, data) from None


def _protocol_error(exc: ValidationError, data: Any) -> ProtocolError:
    uid = _utterance_id_of(data)
    kind = data.get("type") if isinstance(data, dict) else None
    kind = kind if kind in ("utterance.start", "utterance.end") else None
    first = exc.errors(include_url=False)[0]
    kind_code = first["type"]
    # Drop the discriminator level ("utterance.start") from the location people read.
    loc = [str(p) for p in first["loc"] if p not in ("utterance.start", "utterance.end")]
    where = ".".join(loc) or "frame"
    if kind_code in _FRAME_NOT_OBJECT and not loc:
        return ProtocolError(ErrorCode.MALFORMED_JSON, "a frame must be a JSON object", uid)
    if kind_code in _UNKNOWN_TYPE:
        got = data.get("type") if isinstance(data, dict) else None
        return ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {got!r}; expected 'utterance.start' or 'utterance.end'", uid)
    if kind_code in _CUSTOM_CODES:
        return ProtocolError(ErrorCode(kind_code), first["msg"], uid, kind)
    return ProtocolError(ErrorCode.INVALID_FIELD, f"{where}: {first['msg']}", uid, kind)


# The fast path's patterns are stricter than the models' (full matches, ASCII digits, the
# canonical time spelling): whatever they do not take goes through pydantic unchanged.
_UUID_FULL = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_CANONICAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_LOCALE_FULL = re.compile(LOCALE_PATTERN)


def _fast(data: Any, max_transcript_bytes: int) -> UtteranceStart | UtteranceEnd | None:
    """The usual well-formed frame, checked by hand (a sixth of pydantic's cost per frame);
    ``None`` for anything else, which the models then judge and word the error for.

    What it accepts, it builds exactly as the models would: the same normalised values.
    """
    if type(data) is not dict or len(data) != 4:
        return None
    uid = data.get("utterance_id")
    if type(uid) is not str or _UUID_FULL.fullmatch(uid) is None:
        return None
    kind = data.get("type")
    if kind == "utterance.start":
        at, audio = data.get("recorded_at"), data.get("audio")
        if type(at) is not str or _CANONICAL_TIME.fullmatch(at) is None \
                or type(audio) is not dict or len(audio) != 3:
            return None
        rate, width, channels = audio.get("rate"), audio.get("width"), audio.get("channels")
        if type(rate) is not int or type(width) is not int or type(channels) is not int \
                or not is_supported(rate, width, channels):
            return None
        try:
            datetime.fromisoformat(at[:-1])  # a real calendar date and time of day
        except ValueError:
            return None
        # Already in the normalised spelling (UTC, milliseconds, Z): kept as it is.
        return UtteranceStart.model_construct(type=kind, utterance_id=uid.lower(),
                                              recorded_at=at, audio=FORMAT)
    if kind == "utterance.end":
        transcript, locale = data.get("transcript"), data.get("locale")
        if type(transcript) is not str or type(locale) is not str \
                or _LOCALE_FULL.fullmatch(locale) is None or "\x00" in transcript:
            return None
        if transcript.isascii():
            size = len(transcript)  # ASCII is already NFC
        else:
            try:
                transcript.encode("utf-8")
            except UnicodeEncodeError:
                return None
            transcript = unicodedata.normalize("NFC", transcript)
            size = len(transcript.encode("utf-8"))
        if size > max_transcript_bytes:
            return None
        return UtteranceEnd.model_construct(type=kind, utterance_id=uid.lower(),
                                            transcript=transcript, locale=locale)
    return None


def parse_frame(text: str | bytes, *, max_transcript_bytes: int = MAX_TRANSCRIPT_BYTES
                ) -> UtteranceStart | UtteranceEnd:
    """Parse one text frame from a device into its message, or raise :class:`ProtocolError`."""
    data = _loads(text)
    fast = _fast(data, max_transcript_bytes)
    if fast is not None:
        return fast
    return _validate(data, max_transcript_bytes)
