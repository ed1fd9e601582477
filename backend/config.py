"""Backend configuration: one frozen dataclass, built in exactly one place per entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Config:
    """Everything the backend can be told at start.

    Limits are in the units their names say; the defaults are what a served backend uses.
    """

    data_dir: Path
    """Folder for ``overheard.db``, staged packages and ``admin-token``."""
    admin_token: str = ""
    """Bearer token for admin routes; empty means generate one into ``data_dir/admin-token``."""
    id_seed: int | None = None
    """Seed for server-assigned ids (accounts, devices, requests): same seed, same ids."""
    clock_start: datetime | None = None
    """Start of the simulated clock; ``None`` means now."""
    clock_frozen: bool = False
    """A frozen clock moves only by ``POST /v1/admin/clock``."""
    synchronous: str = "FULL"
    """SQLite ``synchronous`` pragma: FULL makes every acknowledged write durable."""
    max_batch: int = 256
    """Most writes the writer commits in one transaction."""
    max_utterance_seconds: float = 60.0
    """Longest utterance accepted, in seconds of 16 kHz mono s16le audio."""
    max_transcript_bytes: int = 4096
    """Longest transcript accepted, in UTF-8 bytes."""
    max_frame_bytes: int = 64 * 1024
    """Largest binary frame on the device stream."""
    ws_idle_timeout: float = 60.0
    """Seconds a device stream may stay silent before it is closed."""
    export_workers: int = 2
    """Export jobs built at once."""
    link_ttl_seconds: int = 5 * 24 * 3600
    """How long a download link works."""
    manual_review: tuple[str, ...] = ()
    """Request kinds (``access``, ``erasure``) that wait for an operator."""
    link_secret: bytes = b""
    """HMAC key for download links; empty means random per data dir (kept in ``link-secret``)."""
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Faults switched on at start, with their parameters."""
    guards: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Guards switched on at start, with their parameters."""

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / "overheard.db"

    @property
    def staging_dir(self) -> Path:
        return Path(self.data_dir) / "staging"

    @property
    def packages_dir(self) -> Path:
        return Path(self.data_dir) / "packages"
