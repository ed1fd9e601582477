"""``python -m backend``: serve the backend."""

from backend.serve import main

main()
