"""WAV files from stored PCM: one header writer for voice history, packages and staging."""

from __future__ import annotations

import struct


def wav_header(pcm_len: int, rate: int, width: int, channels: int) -> bytes:
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


def pcm_to_wav(pcm: bytes, *, rate: int, width: int, channels: int) -> bytes:
    """A whole WAV file: header, PCM, and the pad byte after odd-length PCM."""
    return wav_header(len(pcm), rate, width, channels) + pcm + (b"\0" if len(pcm) & 1 else b"")
