"""The access package's layout: what a zip answering an Art. 15 access request holds.

::

    manifest.json            format, request, subject, counts, and per file: path, sha256,
                             bytes, recording_id, owner account_id as stored
    README.txt               what is inside, in plain words
    index.html               browsable: recordings with players and transcripts
    account/profile.json
    devices/devices.csv
    voice/transcripts.csv    recording_id, device, recorded_at, duration_ms, transcript, file
    voice/recordings/<recording_id>.wav   WAV in the one audio format (contract.audio)

The backend writes packages in this layout; the auditor reads any package, trusting none
of it, by these names.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

FORMAT = "overheard-access-package/1"
"""The manifest's ``format``: this layout, version 1."""

MANIFEST = "manifest.json"
README = "README.txt"
INDEX = "index.html"
PROFILE = "account/profile.json"
DEVICES = "devices/devices.csv"
TRANSCRIPTS = "voice/transcripts.csv"
RECORDINGS_DIR = "voice/recordings/"

DEVICE_COLUMNS = ("device_id", "serial", "model", "room", "registered_at", "deregistered_at")
"""The header of ``devices/devices.csv``."""
TRANSCRIPT_COLUMNS = ("recording_id", "device", "recorded_at", "duration_ms", "transcript",
                      "file")
"""The header of ``voice/transcripts.csv``; ``file`` is the recording's entry name."""

SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
"""Server-assigned ids look like this; anything else never becomes part of an entry name."""


def recording_entry_name(recording_id: str, index: int) -> str:
    """The entry a recording is stored under: by its id, or by its position when the id
    is not a safe file name (entry names are never taken from device input)."""
    if SAFE_ID.fullmatch(recording_id):
        return f"{RECORDINGS_DIR}{recording_id}.wav"
    return f"{RECORDINGS_DIR}recording-{index:06d}.wav"


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManifestFile(_Fields):
    """One file of the package as the manifest lists it."""

    path: str
    sha256: str
    bytes: int
    recording_id: str | None
    account_id: str
    """The owner as stored in the backend's tables (a claim the auditor checks)."""


class ManifestSubject(_Fields):
    """Whom the package is about."""

    account_id: str
    name: str | None
    email: str | None


class ManifestCounts(_Fields):
    """How much the package holds (the manifest itself not counted)."""

    recordings: int
    devices: int
    files: int
    bytes: int


class Manifest(_Fields):
    """``manifest.json``; the fields appear in this order."""

    format: str = FORMAT
    request_id: str
    account_id: str
    subject: ManifestSubject
    generated_at: str
    counts: ManifestCounts
    files: list[ManifestFile]
