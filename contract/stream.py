"""The device stream's messages (WebSocket ``GET /v1/device/stream``) and its error codes.

Text frames are JSON objects with a ``type``; audio travels in binary frames of raw PCM
(:mod:`contract.audio`) between ``utterance.start`` and ``utterance.end``. The server
answers each utterance with ``utterance.stored`` once it is committed, or with ``error``.
``utterance_id`` is the idempotency key: a retry after a lost ack stores nothing twice.

The models validate what a device sends (the backend parses with them); the ``*_json``
functions build the frames both sides send, so every frame is spelled here and only here.
"""

from __future__ import annotations

import json
import re
import unicodedata
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from contract.audio import CHANNELS, NAME, RATE, WIDTH, is_supported
from contract.rfc3339 import parse_rfc3339, rfc3339

PATH = "/v1/device/stream"
"""Where devices connect (with ``Authorization: Bearer <device_token>``)."""

LOCALE_PATTERN = r"^[a-z]{2,3}(?:[-_](?:[A-Z]{2}|[0-9]{3}))?$"
"""A language tag such as ``de``, ``de-DE`` or ``de_DE``."""

MAX_TRANSCRIPT_BYTES = 4096
"""The default limit on a transcript's UTF-8 length (the server's may differ)."""

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
"""An ``utterance_id``: a UUID in any case."""
# RFC 3339 date-time only: a date alone, or a time without zone, is not accepted.
_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


class ErrorCode(StrEnum):
    """Every ``code`` an ``error`` frame can carry."""

    MALFORMED_JSON = "malformed_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_UUID = "invalid_uuid"
    INVALID_FIELD = "invalid_field"
    INVALID_TEXT = "invalid_text"
    TRANSCRIPT_TOO_LONG = "transcript_too_long"
    UNSUPPORTED_FORMAT = "unsupported_format"
    BINARY_BEFORE_START = "binary_before_start"
    START_BEFORE_END = "start_before_end"
    END_WITHOUT_START = "end_without_start"
    FRAME_TOO_LARGE = "frame_too_large"
    ODD_BYTE_COUNT = "odd_byte_count"
    UTTERANCE_TOO_LONG = "utterance_too_long"
    UTTERANCE_CONFLICT = "utterance_conflict"
    DEVICE_REVOKED = "device_revoked"
    IDLE_TIMEOUT = "idle_timeout"
    STORAGE_FAILED = "storage_failed"
    INTERNAL = "internal"


RETRYABLE = frozenset({ErrorCode.STORAGE_FAILED})
"""Codes after which an utterance may or may not be stored: the device sends it again, with
the same ``utterance_id``, and never counts it as failed."""


class Wire(BaseModel):
    """Base for every message: unknown keys are an error; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> str:
        """The frame as sent: compact JSON, UTF-8 text."""
        return _dumps(self.model_dump(mode="json"))


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _check_uuid(value: Any) -> str:
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise PydanticCustomError("invalid_uuid", "utterance_id must be a UUID like "
                                  "'123e4567-e89b-12d3-a456-426614174000'")
    # One spelling per utterance so that the idempotency key matches on retry.
    return value.lower()


UtteranceId = Annotated[str, BeforeValidator(_check_uuid)]
"""A device-chosen UUID, lowercased: the idempotency key of a recording."""


class AudioFormat(Wire):
    """The audio format a device announces; only the one format is stored."""

    rate: int = Field(strict=True)
    """Samples per second (Hz)."""
    width: int = Field(strict=True)
    """Bytes per sample."""
    channels: int = Field(strict=True)
    """Interleaved channels."""

    @model_validator(mode="after")
    def _supported(self) -> Self:
        if not is_supported(self.rate, self.width, self.channels):
            raise PydanticCustomError(
                "unsupported_format",
                f"audio must be rate {RATE}, width {WIDTH}, channels {CHANNELS} ({NAME}); got "
                "rate {rate}, width {width}, channels {channels}",
                {"rate": self.rate, "width": self.width, "channels": self.channels},
            )
        return self


FORMAT = AudioFormat.model_construct(rate=RATE, width=WIDTH, channels=CHANNELS)
"""The one format, as a device announces it."""


class UtteranceStart(Wire):
    """Device → server: opens an utterance; binary PCM frames follow."""

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
    """Device → server: closes an utterance with its transcript; the server then stores it."""

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
        limit = (info.context or {}).get("max_transcript_bytes", MAX_TRANSCRIPT_BYTES)
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
    code: ErrorCode
    message: str
    utterance_id: str | None = None


DeviceMessage = Annotated[UtteranceStart | UtteranceEnd, Field(discriminator="type")]
"""What a device may send as a text frame."""


# The builders below write the same JSON as ``Model(...).to_json()`` without validating
# again what the sender already holds in the normal form: they run once per utterance.

def start_json(utterance_id: str, recorded_at: str) -> str:
    """An ``utterance.start`` frame in the one audio format."""
    return _dumps({"type": "utterance.start", "utterance_id": utterance_id,
                   "recorded_at": recorded_at,
                   "audio": {"rate": RATE, "width": WIDTH, "channels": CHANNELS}})


def end_json(utterance_id: str, transcript: str, locale: str) -> str:
    """An ``utterance.end`` frame."""
    return _dumps({"type": "utterance.end", "utterance_id": utterance_id,
                   "transcript": transcript, "locale": locale})


def stored_json(utterance_id: str, recording_id: str, duplicate: bool) -> str:
    """An ``utterance.stored`` frame."""
    return _dumps({"type": "utterance.stored", "utterance_id": utterance_id,
                   "recording_id": recording_id, "duplicate": duplicate})


def error_json(code: ErrorCode, message: str, utterance_id: str | None = None) -> str:
    """An ``error`` frame."""
    return ErrorMessage(code=code, message=message, utterance_id=utterance_id).to_json()
