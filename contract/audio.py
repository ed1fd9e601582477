"""The one audio format: 16 kHz, 16-bit little-endian signed PCM, mono; and its WAV files.

Devices send it, the backend stores and serves only it, packages carry it as WAV, and
the auditor hashes its PCM frames. Vocabulary follows Wyoming: ``rate`` in Hz, ``width``
in bytes per sample, ``channels`` a count.
"""

from __future__ import annotations

import io
import struct
import wave
from typing import NamedTuple

from contract.errors import WavError

RATE = 16000
"""Samples per second (Hz)."""
WIDTH = 2
"""Bytes per sample (s16le)."""
CHANNELS = 1
"""Mono."""
FRAME_BYTES = WIDTH * CHANNELS
"""Bytes per sample frame (one sample of every channel)."""
BYTES_PER_SECOND = RATE * FRAME_BYTES
"""PCM bytes per second of audio."""
NAME = "16 kHz mono s16le"
"""How the format is named in messages and docs."""


class Pcm(NamedTuple):
    """A WAV file's PCM frames and the format its header declares."""

    pcm: bytes
    rate: int
    width: int
    channels: int
    declared_bytes: int
    """What the header says the data holds (more than ``len(pcm)`` when truncated)."""


def is_supported(rate: int, width: int, channels: int) -> bool:
    """Whether ``(rate, width, channels)`` is the one format."""
    return (rate, width, channels) == (RATE, WIDTH, CHANNELS)


def duration_ms(pcm_bytes: int) -> int:
    """How long ``pcm_bytes`` bytes of audio in the format last, in whole milliseconds."""
    return pcm_bytes * 1000 // BYTES_PER_SECOND


def wav_header(pcm_len: int, rate: int = RATE, width: int = WIDTH,
               channels: int = CHANNELS) -> bytes:
    """The 44-byte RIFF/WAVE header for ``pcm_len`` bytes of little-endian PCM.

    Written by hand rather than through :mod:`wave` so a PCM blob can go into a zip or a
    response without being copied into a WAV buffer first. An odd ``pcm_len`` is followed
    by one pad byte, as RIFF requires.
    """
    block = width * channels
    pad = pcm_len & 1
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + pcm_len + pad, b"WAVE", b"fmt ", 16, 1,
        channels, rate, rate * block, block, width * 8, b"data", pcm_len,
    )


def pcm_to_wav(pcm: bytes, rate: int = RATE, width: int = WIDTH,
               channels: int = CHANNELS) -> bytes:
    """A whole WAV file: header, PCM, and the pad byte after odd-length PCM."""
    return wav_header(len(pcm), rate, width, channels) + pcm + (b"\0" if len(pcm) & 1 else b"")


def read_wav(source: bytes | str) -> Pcm:
    """The PCM frames of a WAV file (its bytes, or a path) and the format it declares.

    Raises :class:`~contract.errors.WavError` for a file that is not a readable WAV.
    """
    try:
        with wave.open(io.BytesIO(source) if isinstance(source, bytes) else source, "rb") as w:
            frames = w.getnframes()
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            return Pcm(w.readframes(frames), rate, width, channels, frames * width * channels)
    except (wave.Error, EOFError) as exc:
        raise WavError(str(exc)) from exc
