"""Server-assigned identifiers and secret tokens: one injectable id source per app.

Ids are prefixed (``acc_``, ``dev_``...) so a person can tell them apart in logs. A served
backend draws ids, tokens, link nonces and verification codes from :mod:`secrets`. With
``Config.id_seed`` set (embedded scenario runs), :class:`IdGen` derives every one of them
from the seed instead, so the same scenario and seed give the same ids and the same report.

Seeded values never depend on which thread asks first: each is a hash of the seed, the
prefix, an optional ``key`` and a counter *per (prefix, key)*. Calls made from concurrent
places (export jobs, alerts raised by them) pass a ``key`` that names what the id is for
(the request id, the package id), so their interleaving cannot change any value; calls
without a key come from handlers a scenario runner drives one at a time.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading


class IdGen:
    """The id source: thread-safe; derived from a seed when given one, else secrets."""

    def __init__(self, seed: int | None = None, epoch: int = 0) -> None:
        self._lock = threading.Lock()
        self._seeded = seed is not None
        self._counters: dict[tuple[str, str | None], int] = {}
        self._salt = (
            f"overheard-{seed}".encode() if seed is not None else secrets.token_bytes(16)
        )
        # The counters live in memory: a seeded backend restarted on the same data dir
        # counts from zero again, so each start (epoch) draws from its own stream or the
        # new ids would repeat the stored ones. Derived ids stay a function of their key.
        self._counted_salt = self._salt + (f"\x00epoch{epoch}".encode() if epoch else b"")

    @property
    def seeded(self) -> bool:
        return self._seeded

    def _material(self, kind: str, prefix: str, key: str | None) -> bytes:
        with self._lock:
            n = self._counters.get((f"{kind}:{prefix}", key), 0)
            self._counters[(f"{kind}:{prefix}", key)] = n + 1
        return hashlib.sha256(
            self._counted_salt + f"\x00{kind}\x00{prefix}\x00{key or ''}\x00{n}".encode()).digest()

    def new(self, prefix: str, key: str | None = None) -> str:
        """A fresh id; ``key`` names what it is for when the caller runs concurrently."""
        if self._seeded:
            return f"{prefix}_{self._material('id', prefix, key)[:8].hex()}"
        return f"{prefix}_{secrets.token_hex(8)}"

    def derived(self, prefix: str, key: str) -> str:
        """An id that is a function of ``key`` (e.g. a recording from its utterance id)."""
        digest = hashlib.sha256(self._salt + key.encode()).hexdigest()[:20]
        return f"{prefix}_{digest}"

    def secret_bytes(self, n: int, key: str | None = None) -> bytes:
        """``n`` unguessable bytes (seeded: derived, for reproducible runs; at most 32)."""
        if self._seeded:
            return self._material("bytes", str(n), key)[:n]
        return secrets.token_bytes(n)

    def token(self, prefix: str, key: str | None = None) -> str:
        """A bearer secret with 256 bits of entropy."""
        if self._seeded:
            raw = self._material("token", prefix, key)
            return f"{prefix}_{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}"
        return new_token(prefix)

    def code(self, key: str | None = None) -> str:
        """A six-digit verification code."""
        if self._seeded:
            return f"{int.from_bytes(self._material('code', '', key)[:8], 'big') % 10**6:06d}"
        return f"{secrets.randbelow(10**6):06d}"


def new_token(prefix: str) -> str:
    """A bearer secret with 256 bits of entropy, always from :mod:`secrets`."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
