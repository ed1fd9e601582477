"""Errors of ``overheard explore``."""

from __future__ import annotations


class ExploreError(Exception):
    """A campaign that cannot be run or merged (bad option, unreadable shard): exit 2."""
