"""Backend configuration: one frozen dataclass, built in exactly one place per entry point.

:class:`Config` is what the backend is told at start. The part of it that may change while
it serves (:data:`RUNTIME_KEYS`: which request kinds wait for an operator, how long links
and codes live...) is read through :class:`LiveConfig`, which ``PUT /v1/admin/config``
replaces whole; the rest (data dir, pool sizes, limits) is fixed for the process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from backend.errors import SettingFixed

MAX_DURATION = 10 * 365 * 86400
"""The longest duration accepted anywhere (ten years, as far as the clock may move)."""


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
    id_epoch: int = 0
    """How many times a seeded backend was started on this data dir before: each start
    draws its counted ids from a stream of its own (:class:`backend.ids.IdGen`)."""
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
    max_audio_in_flight_bytes: int = 64 * 1024 * 1024
    """Most PCM bytes of finished utterances waiting for their commit, across every device
    stream; beyond it a stream stops reading from its socket until commits free room."""
    ws_idle_timeout: float = 60.0
    """Seconds a device stream may stay silent before it is closed."""
    keepalive_timeout: float = 75.0
    """Seconds an HTTP connection may go without a complete request before it is closed
    (also what a slowloris client gets: aiohttp's timer runs from the connection's start)."""
    body_timeout: float = 30.0
    """Seconds a handler waits for a request body to arrive before answering 408."""
    export_workers: int = 2
    """Export jobs built at once."""
    link_ttl_seconds: int = 5 * 24 * 3600
    """How long a download link works."""
    manual_review: tuple[str, ...] = ()
    """Request kinds (``access``, ``erasure``) that wait for an operator."""
    link_secret: bytes = b""
    """HMAC key for download links; empty means random per data dir (kept in ``link-secret``)."""
    link_bound: bool = False
    """Download links also need the requester's own token (always on with ``delivery.bound_links``)."""
    link_single_use: bool = False
    """A download link works once (always on with ``delivery.bound_links``)."""
    public_url: str = ""
    """Base URL put in emailed links; empty means links are paths relative to the server."""
    code_ttl_seconds: int = 600
    """How long an emailed verification code works."""
    code_tries: int = 3
    """Wrong codes allowed before the request is denied (``insuf_verification``)."""
    code_requests_per_address: int = 5
    """Codes an address may be sent per ``limit_window_seconds`` (email path); beyond: 429."""
    code_requests_per_client: int = 100
    """Email-path requests one client address may file per ``limit_window_seconds``."""
    code_failures_per_address: int = 10
    """Wrong codes an address may see per ``limit_window_seconds``, over all its requests."""
    limit_window_seconds: int = 3600
    """The sliding window of the limits above, in seconds of the backend's clock."""
    export_attempts: int = 3
    """Times an export job is started (restarts after a crash included) before it is ``error``."""
    crash_at: str = ""
    """Test-only: ``<point>:<n>`` pauses the server at a crash point (:mod:`backend.crashpoints`)
    so a test can SIGKILL it there; read once from ``OVERHEARD_CRASH_AT``. Empty: off."""
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Faults switched on at start, with their parameters."""
    guards: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Guards switched on at start, with their parameters."""

    def runtime(self) -> dict[str, Any]:
        """The settings that may change while serving, under their public names."""
        return {"manual_review": list(self.manual_review), "link_ttl": self.link_ttl_seconds,
                "export_workers": self.export_workers, "link_bound": self.link_bound,
                "link_single_use": self.link_single_use, "code_ttl": self.code_ttl_seconds,
                "code_tries": self.code_tries}

    @property
    def db_path(self) -> Path:
        return Path(self.data_dir) / "overheard.db"

    @property
    def staging_dir(self) -> Path:
        return Path(self.data_dir) / "staging"

    @property
    def packages_dir(self) -> Path:
        return Path(self.data_dir) / "packages"


RUNTIME_KEYS: dict[str, str] = {
    "manual_review": "request kinds (access, erasure) that wait for an operator",
    "link_ttl": "how long a new download link works, in seconds",
    "export_workers": "export jobs built at once; fixed at start (a change is refused)",
    "link_bound": "new links also need the requester's own token",
    "link_single_use": "new links work once",
    "code_ttl": "how long a new verification code works, in seconds",
    "code_tries": "wrong codes allowed before a request is denied",
}
"""The public names of the run-time settings (``GET/PUT /v1/admin/config``)."""

FIXED_AT_START = ("export_workers",)
"""Run-time keys reported but not changeable while serving: the pool is built at start."""


class LiveConfig:
    """The :class:`Config` a running app uses now; :meth:`apply` replaces it whole, so a
    reader never sees half an update. Thread-safe (export jobs read it from threads)."""

    def __init__(self, config: Config) -> None:
        self._lock = threading.Lock()
        self._config = config

    @property
    def current(self) -> Config:
        return self._config

    def apply(self, changes: dict[str, Any]) -> Config:
        """Apply public run-time keys (already validated); raises :class:`SettingFixed`."""
        with self._lock:
            old = self._config
            now = old.runtime()
            for key in FIXED_AT_START:
                if key in changes and changes[key] != now[key]:
                    raise SettingFixed(key, now[key])
            fields: dict[str, Any] = {}
            if "manual_review" in changes:
                fields["manual_review"] = tuple(changes["manual_review"])
            if "link_ttl" in changes:
                fields["link_ttl_seconds"] = int(changes["link_ttl"])
            if "code_ttl" in changes:
                fields["code_ttl_seconds"] = int(changes["code_ttl"])
            for key in ("link_bound", "link_single_use", "code_tries"):
                if key in changes:
                    fields[key] = changes[key]
            self._config = replace(old, **fields)
            return self._config
