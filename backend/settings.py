"""The settings a person running the backend chooses: a scenario's ``[backend]`` table, the
``overheard serve --config FILE`` file and the serve flags all use these keys.

=================  ===============================  ==========================================
key                type                             meaning
=================  ===============================  ==========================================
``manual_review``  list of ``access``, ``erasure``  request kinds that wait for an operator
``link_ttl``       duration (``"5d"``, seconds)     how long a download link works
``export_workers`` integer 1-16                     export jobs built at once
=================  ===============================  ==========================================
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from backend.config import MAX_DURATION, Config
from backend.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 1}
REVIEW_KINDS = ("access", "erasure")


def parse_duration(value: str | int | float) -> float:
    """``"3d"``, ``"90m"``, ``"36h"``, ``"2w"`` or a number of seconds -> seconds.

    Raises ``ValueError`` for anything else: a sign, an unknown unit, a negative or
    non-finite number, more than ten years, a boolean.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a duration like '30s', '90m', '36h', '3d' or '2w'")
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a duration like '30s', '90m', '36h', '3d' or "
                             "'2w' (durations move forward: no sign)")
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        seconds = float(value)
    if not seconds >= 0:  # also NaN
        raise ValueError(f"{value!r}: a duration cannot be negative")
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r}: at most ten years")
    return seconds


def _duration(value: Any) -> Any:
    parse_duration(value)
    return value


Duration = Annotated[str | int | float, AfterValidator(_duration),
                     Field(description="seconds, or a number with s/m/h/d/w")]


class BackendSettings(BaseModel):
    """How the backend is configured: unknown keys and wrong types are errors."""

    # Strict: ``true`` is no duration and ``"2"`` no number; TOML and JSON have both types.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    manual_review: list[Literal["access", "erasure"]] = Field(default_factory=list)
    link_ttl: Duration = "5d"
    export_workers: int = Field(2, ge=1, le=16)

    def apply(self, config: Config) -> Config:
        """``config`` with these settings."""
        return dataclasses.replace(config, manual_review=tuple(self.manual_review),
                                   link_ttl_seconds=int(parse_duration(self.link_ttl)),
                                   export_workers=self.export_workers)


def _problems(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else \
            err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {key}: {msg}")
    return "\n".join(lines)


def settings_from(raw: dict[str, Any], where: str) -> BackendSettings:
    """Validate a dict of settings; a :class:`ConfigError` names ``where`` and the key."""
    try:
        return BackendSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, where)) from None


def load_settings(path: Path) -> dict[str, Any]:
    """The settings in a TOML file (top-level keys as in a scenario's ``[backend]``), checked;
    only the keys the file sets."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    settings_from(raw, str(path))
    return raw


def review_kinds(value: str) -> list[str]:
    """``--manual-review access,erasure`` (or ``none``) -> the kinds, checked."""
    kinds = [k.strip() for k in value.split(",") if k.strip() and k.strip() != "none"]
    bad = [k for k in kinds if k not in REVIEW_KINDS]
    if bad:
        raise ConfigError(f"--manual-review: unknown kind(s) {', '.join(bad)}; "
                            f"known: {', '.join(REVIEW_KINDS)}")
    return kinds


def serve_settings(config_file: Path | None, manual_review: str | None,
                   link_ttl: str | None) -> BackendSettings:
    """The file's settings, then the flags over them."""
    raw = load_settings(config_file) if config_file else {}
    if manual_review is not None:
        raw["manual_review"] = review_kinds(manual_review)
    if link_ttl is not None:
        raw["link_ttl"] = link_ttl
    return settings_from(raw, str(config_file) if config_file else "serve flags")
