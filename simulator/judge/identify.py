"""How the victims of a leak could be found: clues in what they said, and who matches them.

In 2018 journalists identified the man whose recordings had been misdelivered from what
the recordings said: first names, places asked about in weather questions, habits. This
module does the same with a leak's transcripts, reading them the way a person would: each
transcript is matched against the assistant phrases of its language (``Ruf {contact} an.``,
``Wie wird das Wetter morgen in {town}?``), and the slot values are collected. Nothing
here looks at the backend or at whose recordings they were; the ledger only supplies the
transcripts of the leaked files, and the world is the population the clues are held
against (the people a journalist could ring).

Clues, each kept only when the transcripts make it reliable:

- ``town``: the town of most weather questions, when asked about at least three times and
  in at least half of them (people ask about the weather at home);
- ``contact``: a name called or messaged at least twice (partners, relatives, friends);
- ``doctor``: the doctor's name in appointment reminders;
- ``street``: the address a taxi was ordered to;
- ``room``: a room whose lights or heating were switched at least twice (where the
  household's speakers stand);
- ``artist``: among the three artists asked for most, at least three times (a habit).

``matching_households`` is how many households of the world fit every clue at once; 1
means the clues single the household out.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from simulator.fleet.ledger import LedgerEntry
from simulator.world.households import Household, World
from simulator.world.phrasebook import PHRASEBOOKS, Phrasebook

if TYPE_CHECKING:  # the auditor imports this module for its Identifiability
    from simulator.judge.audit import FileVerdict

_TOWN_MIN = 3
_CONTACT_MIN = 2
_ROOM_MIN = 2
_ARTIST_MIN = 3
_TOP_ARTISTS = 3
_FORMATTER = string.Formatter()

KIND_WORDS = {"town": "the town", "contact": "the contact", "doctor": "the doctor",
              "street": "the street", "room": "the room", "artist": "the artist"}
"""How the report names each kind of clue."""


@dataclass(frozen=True)
class Clue:
    """Something the transcripts reveal, and how often they say it."""

    kind: str
    value: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "count": self.count}


@dataclass(frozen=True)
class Identifiability:
    """What one leak's transcripts reveal (``leaks[].identifiability`` of report.json)."""

    clues: list[Clue]
    matching_households: int
    """Households of the world that fit every clue at once (1: singled out)."""
    households: int
    """Households in the world: the population the clues are held against."""

    def to_dict(self) -> dict[str, Any]:
        return {"clues": [c.to_dict() for c in self.clues],
                "matching_households": self.matching_households,
                "households": self.households}


@cache
def _patterns(tag: str) -> list[tuple[str, re.Pattern[str]]]:
    """Every template of the locale as a regex with a named group per slot, most specific
    (longest fixed text) first, so ``Ruf {contact} auf dem Handy an.`` wins over
    ``Ruf {contact} an.``."""
    book = next(b for b in PHRASEBOOKS.values() if b.tag == tag)
    out: list[tuple[int, str, re.Pattern[str]]] = []
    for intent, templates in book.templates.items():
        for template in set(templates):
            fixed = 0
            regex = ""
            seen: set[str] = set()
            for literal, field, _, _ in _FORMATTER.parse(template):
                regex += re.escape(literal)
                fixed += len(literal)
                if field is not None:
                    body = _slot_regex(book, field)
                    regex += f"(?:{body})" if field in seen else f"(?P<{field}>{body})"
                    seen.add(field)
            first = regex[:1]
            if first.isalpha():  # transcripts start with a capital letter
                regex = f"[{first.upper()}{first.lower()}]" + regex[1:]
            out.append((fixed, intent, re.compile(regex)))
    out.sort(key=lambda item: -item[0])
    return [(intent, pattern) for _, intent, pattern in out]


def _slot_regex(book: Phrasebook, field: str) -> str:
    """What a slot can hold: the language's own words where it has a closed list (a listener
    knows the towns, the phrases and the numbers), anything for names and addresses."""
    closed: dict[str, tuple[str, ...]] = {
        "town": book.towns, "town2": book.towns, "item": book.items, "artist": book.artists,
        "genre": book.genres, "message": book.messages, "food": book.foods,
        "weekday": book.weekdays, "in_room": tuple(book.in_room.values()),
    }
    if field in closed:
        words = sorted(set(closed[field]), key=len, reverse=True)
        return "|".join(re.escape(w) for w in words)
    if field in ("minutes", "temp", "pct"):
        return r"\d+"
    return ".+?"


def slots_of(transcript: str, tag: str) -> tuple[str, dict[str, str]] | None:
    """The intent and slot values of one transcript, or None when no phrase fits it."""
    for intent, pattern in _patterns(tag):
        m = pattern.fullmatch(transcript.strip())
        if m:
            return intent, {k: v for k, v in m.groupdict().items() if v is not None}
    return None


def _room_of(book: Phrasebook, phrase: str) -> str | None:
    for room, said in book.in_room.items():
        if said == phrase:
            return room
    return None


def extract_clues(transcripts: Iterable[str], tag: str) -> list[Clue]:
    """The reliable clues in ``transcripts`` spoken in locale ``tag`` (``de-DE``)."""
    book = next(b for b in PHRASEBOOKS.values() if b.tag == tag)
    towns: Counter[str] = Counter()
    weather = 0
    found: dict[str, Counter[str]] = {k: Counter() for k in ("contact", "doctor", "street",
                                                             "room", "artist")}
    for text in transcripts:
        parsed = slots_of(text, tag)
        if parsed is None:
            continue
        intent, slots = parsed
        if intent == "weather" and "town" in slots:
            weather += 1
            towns[slots["town"]] += 1
        for kind in ("contact", "doctor", "street", "artist"):
            if kind in slots:
                found[kind][slots[kind]] += 1
        if "in_room" in slots and (room := _room_of(book, slots["in_room"])) is not None:
            found["room"][room] += 1
    clues: list[Clue] = []
    if towns:
        town, n = towns.most_common(1)[0]
        if n >= _TOWN_MIN and 2 * n >= weather:
            clues.append(Clue("town", town, n))
    clues += [Clue("contact", v, n) for v, n in found["contact"].most_common() if n >= _CONTACT_MIN]
    clues += [Clue("doctor", v, n) for v, n in found["doctor"].most_common(1)]
    clues += [Clue("street", v, n) for v, n in found["street"].most_common(1)]
    clues += [Clue("room", v, n) for v, n in found["room"].most_common() if n >= _ROOM_MIN]
    clues += [Clue("artist", v, n) for v, n in found["artist"].most_common(_TOP_ARTISTS)
              if n >= _ARTIST_MIN]
    return clues


def fits(household: Household, clue: Clue) -> bool:
    """Whether what is known of ``household`` agrees with ``clue``."""
    if clue.kind == "town":
        return household.town == clue.value
    if clue.kind == "contact":
        return clue.value in household.contacts
    if clue.kind == "doctor":
        return household.doctor == clue.value
    if clue.kind == "street":
        return household.street == clue.value
    if clue.kind == "room":
        # the living room and the kitchen are named by every household's commands
        rooms = {d.room for d in household.devices} | {"living room", "kitchen"}
        return clue.value in rooms
    if clue.kind == "artist":
        return clue.value in household.artists
    raise ValueError(f"unknown clue kind {clue.kind!r}")


def identifiability(transcripts: Iterable[str], tag: str, world: World) -> Identifiability:
    """The clues of one leak's transcripts and how many households of ``world`` fit them."""
    clues = extract_clues(transcripts, tag)
    matching = [h.key for h in world.households if all(fits(h, c) for c in clues)]
    return Identifiability(clues, len(matching), len(world.households))


def leaked_transcripts(verdicts: Iterable[FileVerdict], ledger: Iterable[LedgerEntry],
                       from_household: str) -> list[str]:
    """Transcripts of the package files the auditor attributed to ``from_household``."""
    wanted = {v.utterance_id for v in verdicts
              if v.status == "foreign" and v.owner_household == from_household
              and v.duplicate_of is None}
    return [e.transcript or "" for e in ledger if e.utterance_id in wanted]


def in_words(ident: Mapping[str, Any]) -> str:
    """The identifiability in one sentence for a person (from its report.json form, which
    the report's template reads)."""
    clues = ident.get("clues") or []
    k = int(ident.get("matching_households", 0))
    total = ident.get("households")
    of = f" of {total}" if total else ""
    if not clues:
        return (f"The transcripts hold no reliable clue to who is speaking; "
                f"{k}{of} households fit.")
    by_kind: dict[str, list[str]] = {}
    for c in clues:
        times = f"{c['count']} time{'s' if c['count'] != 1 else ''}"
        by_kind.setdefault(c["kind"], []).append(f"{c['value']} ({times})")
    parts = [f"{KIND_WORDS.get(kind, kind)}{'s' if len(vals) > 1 else ''} {_join(vals)}"
             for kind, vals in by_kind.items()]
    verdict = ("so the speakers can be identified from what they said" if k == 1 else
               "no household fits all of them" if k == 0 else
               "they narrow the speakers down but do not single them out")
    return (f"The transcripts name {_join(parts)}; {k}{of} households in the simulated "
            f"world match{'es' if k == 1 else ''} all of these clues: {verdict}.")


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
