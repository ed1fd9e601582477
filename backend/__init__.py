"""overheard backend: the service that devices stream to and account holders ask for their data.

The backend never imports :mod:`simulator`: it must not know the truth it is judged by.
``from backend import create_app, Config`` works; importing the package alone loads
neither the app nor its dependencies (a tool that needs one module pays for that one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.app import create_app
    from backend.config import Config

__all__ = ["create_app", "Config"]


def __getattr__(name: str) -> Any:
    # Loaded on first use (PEP 562), so that ``import backend.clock`` stays cheap.
    if name == "create_app":
        from backend.app import create_app

        return create_app
    if name == "Config":
        from backend.config import Config

        return Config
    raise AttributeError(f"module 'backend' has no attribute {name!r}")
