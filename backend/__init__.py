"""overheard backend: the service that devices stream to and account holders ask for their data.

The backend never imports :mod:`simulator`: it must not know the truth it is judged by.
"""

__all__ = ["create_app", "Config"]

from backend.app import create_app
from backend.config import Config
