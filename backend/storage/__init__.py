"""Storage: SQLite through sqlite-utils, one writer thread with group commit, read-only readers.

Handlers never touch ``sqlite3``: they hand a function to :meth:`Store.write` or
:meth:`Store.read` and await its result.
"""

from backend.storage.db import Store, StoreClosed, StoreFailed

__all__ = ["Store", "StoreClosed", "StoreFailed"]
