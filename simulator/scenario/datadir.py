"""A backend's data dir read as a forensic search reads it: every file, zips opened.

Both the ``erased`` / ``remains`` expectations and the ``erasure_total`` invariant look for a
household's traces in what the backend keeps on disk; this is the one place that lists the
files and opens the zips among them (a package's transcripts are deflated inside it).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_ENTRY = 64 * 2**20
"""Zip entries larger than this are not read (a search must not be made to inflate a bomb)."""


@dataclass(frozen=True)
class DataFile:
    """One file of the data dir, with what a search looks through."""

    name: str
    """Relative to the data dir."""
    text: bytes
    """The file's bytes, and for a zip also its uncompressed entries other than WAVs."""
    wavs: list[bytes] = field(default_factory=list)
    """The WAV audio in it: the file itself when a ``.wav``, its WAV entries when a zip."""


def data_files(data: Path, *, audio: bool = True) -> Iterator[DataFile]:
    """Every file under ``data``, in name order; ``audio=False`` skips reading the WAVs."""
    for f in sorted(p for p in data.rglob("*") if p.is_file()):
        blob = f.read_bytes()
        name = str(f.relative_to(data))
        if f.suffix == ".zip":
            yield DataFile(name, blob + _zip_text(f), _zip_wavs(f) if audio else [])
        else:
            yield DataFile(name, blob, [blob] if audio and f.suffix == ".wav" else [])


def _zip_wavs(path: Path) -> list[bytes]:
    """The WAV entries of a zip (a package the erasure should have removed)."""
    try:
        with zipfile.ZipFile(path) as z:
            return [z.read(i) for i in z.infolist()
                    if i.filename.endswith(".wav") and i.file_size < MAX_ENTRY]
    except (zipfile.BadZipFile, OSError):
        return []


def _zip_text(path: Path) -> bytes:
    """The uncompressed non-audio entries of a zip (transcripts in a package are deflated)."""
    try:
        with zipfile.ZipFile(path) as z:
            return b"".join(z.read(i) for i in z.infolist()
                            if not i.filename.endswith(".wav") and i.file_size < MAX_ENTRY)
    except (zipfile.BadZipFile, OSError):
        return b""
