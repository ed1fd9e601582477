"""Server-assigned identifiers and secret tokens.

Ids are prefixed (``acc_``, ``dev_``...) so a person can tell them apart in logs. With
``Config.id_seed`` set they come from a seeded generator, so a scenario run twice assigns
the same ids; tokens always come from :mod:`secrets`.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading


class IdGen:
    """Makes ids; thread-safe; seeded when asked."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed) if seed is not None else None
        self._salt = (
            f"overheard-{seed}".encode() if seed is not None else secrets.token_bytes(16)
        )

    def new(self, prefix: str) -> str:
        with self._lock:
            if self._rng is not None:
                return f"{prefix}_{self._rng.getrandbits(64):016x}"
        return f"{prefix}_{secrets.token_hex(8)}"

    def derived(self, prefix: str, key: str) -> str:
        """An id that is a function of ``key`` (e.g. a recording from its utterance id)."""
        digest = hashlib.sha256(self._salt + key.encode()).hexdigest()[:20]
        return f"{prefix}_{digest}"


def new_token(prefix: str) -> str:
    """A bearer secret with 256 bits of entropy."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
