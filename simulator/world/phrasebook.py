"""What is said in each locale, read from the data files in ``phrases/<locale>.toml``.

Each file holds one :class:`Phrasebook`: templates per intent, the closed word lists that
fill their slots (towns, items, artists...), how a time of day and a postal address are
written, and the local clock's offset. The files ship as package data and are read once,
when this module is first imported; :data:`PHRASEBOOKS` maps a locale to its book.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

Locale = Literal["de_DE", "fr_FR", "en_US", "en_GB"]
"""A locale with a phrase table (Faker names, assistant phrases in that language); a
scenario's ``locale`` is validated against it."""
LOCALES: tuple[str, ...] = get_args(Locale)


class PhrasebookError(ValueError):
    """A phrase file is missing, is not TOML, or does not hold a phrasebook."""


class Phrasebook(BaseModel):
    """Everything said in one locale: templates per intent and the words that fill them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tag: str
    """BCP 47 tag sent on the wire (``de-DE``)."""
    utc_offset: int
    """Hours from UTC of the local clock (standard time; enough for a daily rhythm)."""
    towns: tuple[str, ...]
    relations: tuple[str, ...]
    in_room: dict[str, str]
    """Room as registered (English) → how it is said (``in der Küche``)."""
    weekdays: tuple[str, ...]
    whens: tuple[str, ...]
    items: tuple[str, ...]
    artists: tuple[str, ...]
    genres: tuple[str, ...]
    tasks: tuple[str, ...]
    messages: tuple[str, ...]
    foods: tuple[str, ...]
    temps: tuple[int, int]
    templates: dict[str, tuple[str, ...]]
    address: str
    """Postal address layout with ``{street}``, ``{postcode}``, ``{town}``."""
    clock: str
    """A time of day with ``{hour}``, ``{hour12}``, ``{minute}``, ``{ampm}``."""
    clock_on_the_hour: str | None = None
    """The same at minute 0, where the locale says it shorter (``7 Uhr``)."""

    def say_time(self, hour: int, minute: int) -> str:
        """A time of day the way people say it in this locale."""
        layout = self.clock_on_the_hour if minute == 0 and self.clock_on_the_hour else self.clock
        return layout.format(hour=hour, hour12=hour % 12 or 12, minute=minute,
                             ampm="am" if hour < 12 else "pm")


def load_phrasebook(locale: str) -> Phrasebook:
    """The phrasebook of ``locale`` from its data file."""
    source = files("simulator.world") / "phrases" / f"{locale}.toml"
    name = f"phrases/{locale}.toml"
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PhrasebookError(f"{name}: no such phrase file") from None
    return parse_phrasebook(text, name)


def parse_phrasebook(text: str, name: str) -> Phrasebook:
    """A phrasebook from the TOML ``text`` of the file ``name`` (named in errors)."""
    try:
        return Phrasebook.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise PhrasebookError(f"{name}: {exc}") from None
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                          for e in exc.errors())
        raise PhrasebookError(f"{name}: {where}") from None


PHRASEBOOKS: dict[str, Phrasebook] = {locale: load_phrasebook(locale) for locale in LOCALES}
"""Locale (``de_DE``) → its phrasebook, read once."""
