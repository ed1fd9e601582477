"""The device stream's wire messages: one pydantic model per message, with ``from_json``/``to_json``.

Text frames are JSON objects with a ``type``; audio travels in binary frames between
``utterance.start`` and ``utterance.end``. Vocabulary follows Wyoming: ``rate`` in Hz,
``width`` in bytes per sample, ``channels`` a count.

Parsing never raises anything but :class:`ProtocolError`, whose ``code`` is the error code
the device receives (``malformed_json``, ``unknown_type``, ``invalid_uuid``,
``unsupported_format``, ``transcript_too_long``, ``invalid_text``, ``invalid_field``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from backend.clock import parse_rfc3339, rfc3339

RATE = 16000
"""The only sample rate accepted, in Hz."""
WIDTH = 2
"""The only sample width accepted, in bytes (s16le)."""
CHANNELS = 1
"""The only channel count accepted (mono)."""
BYTES_PER_SECOND = RATE * WIDTH * CHANNELS

LOCALE_PATTERN = r"^[a-z]{2,3}(?:[-_](?:[A-Z]{2}|[0-9]{3}))?$"
"""A language tag such as ``de``, ``de-DE`` or ``de_DE``."""

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# RFC 3339 date-time only: a date alone, or a time without zone, is not accepted.
_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)

# Error types pydantic reports for the whole frame rather than for a field.
_FRAME_NOT_OBJECT = {"model_type", "dict_type", "model_attributes_type"}
_UNKNOWN_TYPE = {"union_tag_invalid", "union_tag_not_found"}
_CUSTOM_CODES = {"invalid_uuid", "unsupported_format", "transcript_too_long", "invalid_text"}


class ProtocolError(Exception):
    """A frame the server cannot accept; ``code`` is what the device is told."""

    def __init__(self, code: str, message: str, utterance_id: str | None = None,
                 kind: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.utterance_id = utterance_id
        self.kind = kind
        """The frame's ``type`` when it was a known one, so the stream knows what broke."""


class Wire(BaseModel):
    """Base for every message: unknown keys are an error; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, *, max_transcript_bytes: int = 4096) -> Self:
        """Parse one frame as this message type (see :func:`parse_frame` for any type)."""
        data = _loads(text)
        return _validate(cls, data, max_transcript_bytes)


def _check_uuid(value: Any) -> str:
    if not isinstance(value, str) or not _UUID_RE.match(value):
        raise PydanticCustomError("invalid_uuid", "utterance_id must be a UUID like "
                                  "'123e4567-e89b-12d3-a456-426614174000'")
    # One spelling per utterance so that the idempotency key matches on retry.
    return value.lower()


UtteranceId = Annotated[str, BeforeValidator(_check_uuid)]
"""A device-chosen UUID, lowercased: the idempotency key of a recording."""


class AudioFormat(Wire):
    """The audio format a device announces; only 16 kHz mono s16le is stored."""

    rate: int = Field(strict=True)
    """Samples per second (Hz)."""
    width: int = Field(strict=True)
    """Bytes per sample."""
    channels: int = Field(strict=True)
    """Interleaved channels."""

    @model_validator(mode="after")
    def _supported(self) -> Self:
        if (self.rate, self.width, self.channels) != (RATE, WIDTH, CHANNELS):
            raise PydanticCustomError(
                "unsupported_format",
                "audio must be rate 16000, width 2, channels 1 (16 kHz mono s16le); got "
                "rate {rate}, width {width}, channels {channels}",
                {"rate": self.rate, "width": self.width, "channels": self.channels},
            )
        return self


class UtteranceStart(Wire):
    """Opens an utterance; binary PCM frames follow."""

    type: Literal["utterance.start"]
    utterance_id: UtteranceId
    """Client-chosen UUID; the idempotency key of the recording."""
    recorded_at: str
    """When the device heard it (RFC 3339); normalised to UTC with milliseconds."""
    audio: AudioFormat

    @field_validator("recorded_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> str:
        if not isinstance(value, str) or not _RFC3339_RE.match(value):
            raise PydanticCustomError("rfc3339", "must be an RFC 3339 date-time "
                                      "with a time zone, e.g. '2024-05-01T08:30:00Z'")
        try:
            return rfc3339(parse_rfc3339(value))
        except ValueError as exc:
            raise PydanticCustomError("rfc3339", "not a valid date-time: {err}",
                                      {"err": str(exc)}) from None


class UtteranceEnd(Wire):
    """Closes an utterance with its transcript; the server then stores and acknowledges it."""

    type: Literal["utterance.end"]
    utterance_id: UtteranceId
    transcript: str
    """Normalised to NFC; at most ``max_transcript_bytes`` UTF-8 bytes; no NUL."""
    locale: Annotated[str, StringConstraints(pattern=LOCALE_PATTERN)]

    @field_validator("transcript", mode="before")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value  # pydantic reports the wrong type
        if "\x00" in value:
            raise PydanticCustomError("invalid_text", "transcript contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError("invalid_text",
                                      "transcript contains a lone surrogate") from None
        value = unicodedata.normalize("NFC", value)
        limit = (info.context or {}).get("max_transcript_bytes", 4096)
        size = len(value.encode("utf-8"))
        if size > limit:
            raise PydanticCustomError("transcript_too_long",
                                      "transcript is {size} UTF-8 bytes; at most {limit} allowed",
                                      {"size": size, "limit": limit})
        return value


class UtteranceStored(Wire):
    """Server → device: the utterance is committed (or was already, ``duplicate``)."""

    type: Literal["utterance.stored"] = "utterance.stored"
    utterance_id: str
    recording_id: str
    duplicate: bool


class ErrorMessage(Wire):
    """Server → device: a frame or utterance was refused; nothing of it was stored."""

    type: Literal["error"] = "error"
    code: str
    message: str
    utterance_id: str | None = None


DeviceMessage = Annotated[UtteranceStart | UtteranceEnd, Field(discriminator="type")]
"""What a device may send as a text frame."""

_DEVICE_MESSAGE: TypeAdapter[UtteranceStart | UtteranceEnd] = TypeAdapter(DeviceMessage)


def _loads(text: str | bytes) -> Any:
    # The stdlib parser keeps lone surrogates (``"\ud800"``) so that they are reported as
    # invalid text rather than as malformed JSON.
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError("malformed_json", f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("malformed_json", "frame nests too deeply") from None
    except ValueError as exc:  # e.g. an integer beyond the interpreter's digit limit
        raise ProtocolError("malformed_json", f"frame is not acceptable JSON: {exc}") from None


def _utterance_id_of(data: Any) -> str | None:
    if isinstance(data, dict):
        value = data.get("utterance_id")
        if isinstance(value, str) and _UUID_RE.match(value):
            return value.lower()
    return None


def _validate(model: Any, data: Any, max_transcript_bytes: int) -> Any:
    context = {"max_transcript_bytes": max_transcript_bytes}
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_python(data, context=context)
        return model.model_validate(data, context=context)
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
        return ProtocolError("malformed_json", "a frame must be a JSON object", uid)
    if kind_code in _UNKNOWN_TYPE:
        got = data.get("type") if isinstance(data, dict) else None
        return ProtocolError(
            "unknown_type",
            f"unknown message type {got!r}; expected 'utterance.start' or 'utterance.end'", uid)
    if kind_code in _CUSTOM_CODES:
        return ProtocolError(kind_code, first["msg"], uid, kind)
    return ProtocolError("invalid_field", f"{where}: {first['msg']}", uid, kind)


# The fast path's patterns are stricter than the models' (full matches, ASCII digits, the
# canonical time spelling): whatever they do not take goes through pydantic unchanged.
_UUID_FULL = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_CANONICAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_LOCALE_FULL = re.compile(LOCALE_PATTERN)
_FORMAT = AudioFormat.model_construct(rate=RATE, width=WIDTH, channels=CHANNELS)


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
                or (rate, width, channels) != (RATE, WIDTH, CHANNELS):
            return None
        try:
            datetime.fromisoformat(at[:-1])  # a real calendar date and time of day
        except ValueError:
            return None
        # Already in the normalised spelling (UTC, milliseconds, Z): kept as it is.
        return UtteranceStart.model_construct(type=kind, utterance_id=uid.lower(),
                                              recorded_at=at, audio=_FORMAT)
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


def parse_frame(text: str, *, max_transcript_bytes: int = 4096) -> UtteranceStart | UtteranceEnd:
    """Parse one text frame from a device into its message, or raise :class:`ProtocolError`."""
    data = _loads(text)
    fast = _fast(data, max_transcript_bytes)
    if fast is not None:
        return fast
    return _validate(_DEVICE_MESSAGE, data, max_transcript_bytes)  # type: ignore[no-any-return]


def stored_json(utterance_id: str, recording_id: str, duplicate: bool) -> str:
    """``UtteranceStored(...).to_json()`` without the model: one per utterance, on the loop."""
    return json.dumps({"type": "utterance.stored", "utterance_id": utterance_id,
                       "recording_id": recording_id, "duplicate": duplicate},
                      ensure_ascii=False, separators=(",", ":"))

