"""Households and what their speakers say: the simulated world outside the backend.

A :class:`World` is built from one seed. Each household gets its own seed derived from the
world seed and the household's key, so adding a household never changes another one.
From that seed a Faker instance (in the household's locale) draws the account holder, the
members, the postal address; a ``random.Random`` draws devices, contacts, habits and
voices. Nothing reads the global ``random`` module or the wall clock: the simulated clock
starts at :attr:`World.start`, itself a function of the seed.

Utterances sound like real assistant use and carry the detail that made the 2018 victim
identifiable: the weather in the household's town, calls and messages to named contacts,
the doctor's name, the street for a taxi, shopping lists, reminders, music, timers and
smart-home commands, in the household's language.

::

    world = World.build(2018, "de_DE",
                        households=[HouseholdSpec("stranger", members=2, recordings=1700)],
                        background=8)
    for utt in world.traffic(days=60):
        pcm = utt.pcm()
"""

from __future__ import annotations

import hashlib
import math
import random
import string
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from itertools import accumulate

from faker import Faker

from simulator.world.audio import Voice, VoiceEngine, VoiceKind, VoiceProfile, make_voice
from simulator.world.phrasebook import LOCALES, PHRASEBOOKS, Phrasebook

DEVICE_MODELS: dict[str, str] = {
    "Echo Dot (3rd Gen)": "G090LF",
    "Echo Dot (4th Gen)": "G091GL",
    "Echo (2nd Gen)": "G090LJ",
    "Echo (4th Gen)": "G6G0WH",
    "Echo Plus (2nd Gen)": "G2A0RF",
    "Echo Show 5": "G0V1XN",
    "Echo Show 8": "G0X1AC",
    "Echo Studio": "G9V1RX",
    "Echo Spot": "G0A2PH",
}
"""Model name → serial prefix; a serial is the prefix and ten digits (16 characters)."""

ROOMS = ("kitchen", "living room", "bedroom", "office", "bathroom", "kids room", "hallway",
         "dining room")
_ROOM_WEIGHTS = (3.0, 3.0, 1.6, 1.0, 0.6, 0.6, 0.4, 0.5)

_EPOCH = datetime(2018, 1, 1, tzinfo=UTC)

# Relative use of the assistant per local hour: morning and evening peaks, quiet nights.
_HOURS = (0.2, 0.1, 0.05, 0.05, 0.05, 0.2, 1.0, 2.2, 2.0, 1.2, 1.0, 1.1,
          1.4, 1.1, 0.9, 1.0, 1.3, 1.8, 2.4, 2.3, 2.0, 1.6, 1.0, 0.5)

_INTENTS = ("weather", "call", "message", "shopping", "reminder", "music", "timer",
            "smarthome", "other")
_INTENT_WEIGHTS = (1.6, 0.8, 0.7, 1.2, 0.9, 1.6, 1.0, 1.4, 0.8)


class WorldError(ValueError):
    """A world cannot be built as specified (unknown locale, duplicate key...)."""


@dataclass(frozen=True)
class HouseholdSpec:
    """What a scenario asks for; anything left ``None`` is drawn from the seed."""

    key: str
    members: int | None = None
    devices: int | None = None
    recordings: int | None = None
    """Exact number of utterances over a traffic run (``None``: the household's own rate)."""
    locale: str | None = None
    """Overrides the world's locale for this household."""
    name: str | None = None
    """The account holder's name (default: drawn from the seed)."""
    email: str | None = None
    """The account holder's email (default: drawn from the seed)."""
    lookalike_of: str | None = None
    """Key of a household whose holder's drawn name this one's holder shares (a search
    look-alike); ``name`` wins over it."""


@dataclass(frozen=True)
class Speaker:
    """A person in a household who talks to the devices."""

    speaker_id: str
    """Stable id, ``<household>.m<n>`` (the ledger's ``speaker``)."""
    name: str
    kind: VoiceKind
    profile: VoiceProfile
    locale: str = "de_DE"
    """The language the speaker talks to the devices in (the household's)."""
    engine: VoiceEngine = "speech"

    @cached_property
    def voice(self) -> Voice:
        """Made on first use, then reused (renders are cached by the voice)."""
        return make_voice(self.profile, self.locale, self.kind, self.engine)


@dataclass(frozen=True)
class Device:
    """An Echo-like speaker in a room."""

    serial: str
    model: str
    room: str
    """One of :data:`ROOMS` (English, as registered with the backend)."""


@dataclass(frozen=True)
class Holder:
    """The account holder: who the backend knows the account by."""

    name: str
    email: str
    address: str
    locale: str
    """Faker-style locale (``de_DE``)."""


@dataclass(frozen=True)
class Utterance:
    """One thing said to one device at one moment."""

    utterance_id: str
    household: str
    device_serial: str
    speaker: Speaker
    recorded_at: datetime
    transcript: str
    locale: str
    """BCP 47 tag (``de-DE``) as sent in ``utterance.end``."""
    intent: str
    parts: tuple[str, ...] = ()
    """The transcript in the pieces it was made of: template text and slot values (names,
    towns, items), so that each piece is rendered once per speaker and reused."""

    @property
    def recorded_at_iso(self) -> str:
        """RFC 3339, milliseconds, ``Z``: the wire and ledger form."""
        return self.recorded_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def pcm(self) -> bytes:
        """The audio: the speaker's voice saying the transcript (16 kHz mono s16le)."""
        return self.speaker.voice.say_parts(self.parts or (self.transcript,), self.utterance_id)


@dataclass(frozen=True)
class Household:
    """A home: an account holder, members who speak, devices, and habits."""

    key: str
    seed: int
    locale: str
    holder: Holder
    members: tuple[Speaker, ...]
    devices: tuple[Device, ...]
    town: str
    street: str
    doctor: str
    contacts: tuple[str, ...]
    artists: tuple[str, ...]
    rate_per_day: float
    """Mean utterances per day when no exact count is asked for."""
    hour_weights: tuple[float, ...]
    """Relative use per local hour (24 values)."""
    intent_weights: tuple[float, ...]
    speaker_weights: tuple[float, ...]
    device_weights: tuple[float, ...]
    recordings: int | None = None

    @property
    def phrasebook(self) -> Phrasebook:
        return PHRASEBOOKS[self.locale]

    def with_devices(self, devices: Sequence[Device]) -> Household:
        """The same household with another set of devices (bought, sold, registered).

        Rooms outside :data:`ROOMS` weigh like the least-used room.
        """
        weights = tuple(_ROOM_WEIGHTS[ROOMS.index(d.room)] if d.room in ROOMS
                        else min(_ROOM_WEIGHTS) for d in devices)
        return replace(self, devices=tuple(devices), device_weights=weights)

    def traffic(self, start: datetime, days: float, count: int | None = None) -> list[Utterance]:
        """Utterances from ``start`` over ``days``, in time order.

        ``count`` (or the household's ``recordings``) fixes the number exactly; otherwise
        each day draws from the household's rate. The same arguments give the same list.
        """
        if not self.devices or days <= 0:
            return []
        count = count if count is not None else self.recordings
        rng = random.Random(f"{self.seed}/traffic/{start.isoformat()}/{days}/{count}")
        offset = timedelta(hours=self.phrasebook.utc_offset)
        cum_hours = list(accumulate(self.hour_weights))
        span = timedelta(days=days)

        def moment(day: int) -> datetime:
            hour = rng.choices(range(24), cum_weights=cum_hours)[0]
            ms = rng.randrange(3_600_000)
            # local hour of the pattern → UTC
            return start + timedelta(days=day, hours=hour, milliseconds=ms) - offset

        whole_days = max(1, math.ceil(days))
        times: list[datetime] = []
        if count is not None:
            while len(times) < count:
                t = moment(rng.randrange(whole_days))
                if start <= t < start + span:
                    times.append(t)
        else:
            for day in range(whole_days):
                for _ in range(_poisson(rng, self.rate_per_day)):
                    t = moment(day)
                    if start <= t < start + span:
                        times.append(t)
        times.sort()
        speak = _Speech(self, rng)
        return [speak.utterance(t) for t in times]


class _Speech:
    """Fills templates for one household with its own random stream."""

    def __init__(self, household: Household, rng: random.Random) -> None:
        self.h = household
        self.rng = rng
        self.book = household.phrasebook
        self.cum_intents = list(accumulate(household.intent_weights))
        self.cum_speakers = list(accumulate(household.speaker_weights))
        self.cum_devices = list(accumulate(household.device_weights))
        self.rooms = sorted({d.room for d in household.devices} | {"living room", "kitchen"})

    def utterance(self, at: datetime) -> Utterance:
        rng = self.rng
        h = self.h
        device = h.devices[rng.choices(range(len(h.devices)), cum_weights=self.cum_devices)[0]]
        speaker = h.members[rng.choices(range(len(h.members)), cum_weights=self.cum_speakers)[0]]
        intent = _INTENTS[rng.choices(range(len(_INTENTS)), cum_weights=self.cum_intents)[0]]
        template = rng.choice(self.book.templates[intent])
        text, parts = _Fill(self, device).template(template)
        text = text[0].upper() + text[1:]
        parts[0] = parts[0][0].upper() + parts[0][1:]
        uid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # the wire carries ms
        return Utterance(uid, h.key, device.serial, speaker, at, text, self.book.tag, intent,
                         tuple(parts))


_FORMATTER = string.Formatter()


class _Fill:
    """The one slot filler: walks a template, draws each slot the first time it is named
    (in the order the template names it, nested templates at their place) and returns the
    text together with the pieces it was made of."""

    def __init__(self, speech: _Speech, device: Device) -> None:
        self.speech = speech
        self.device = device
        self.values: dict[str, str] = {}
        self.nested: dict[str, list[str]] = {}
        """Slots whose value is itself a template (``when``, ``task``): its pieces."""

    def template(self, template: str) -> tuple[str, list[str]]:
        """``template`` filled: its text, and its pieces (see :func:`_pieces`)."""
        text: list[str] = []
        raw: list[str] = []
        for literal, field, _, _ in _FORMATTER.parse(template):
            text.append(literal)
            raw.append(literal)
            if field is None:
                continue
            value = self.slot(field)
            text.append(value)
            if field in self.nested:
                raw.extend(self.nested[field])
            else:
                raw.append(value)
        return "".join(text), _pieces(raw) or [template]

    def slot(self, name: str) -> str:
        if name not in self.values:
            if name in _NESTED:
                s = self.speech
                sub = s.rng.choice(getattr(s.book, _NESTED[name]))
                self.values[name], self.nested[name] = self.template(sub)
            else:
                filler = _SLOT_FILLERS.get(name)
                if filler is None:
                    raise KeyError(name)
                self.values[name] = filler(self.speech, self.device)
        return self.values[name]


def _town(s: _Speech, device: Device) -> str:
    # mostly home; sometimes where the family or the holiday is
    return s.h.town if s.rng.random() < 0.85 else s.rng.choice(s.book.towns)


def _artist(s: _Speech, device: Device) -> str:
    return s.rng.choice(s.h.artists) if s.rng.random() < 0.8 else s.rng.choice(s.book.artists)


def _clock(s: _Speech, device: Device) -> str:
    return s.book.say_time(s.rng.choice((6, 7, 8, 9, 12, 14, 16, 17, 18, 19, 20)),
                           s.rng.choice((0, 0, 15, 30, 45)))


def _in_room(s: _Speech, device: Device) -> str:
    room = device.room if s.rng.random() < 0.6 else s.rng.choice(s.rooms)
    return s.book.in_room[room]


_NESTED = {"when": "whens", "task": "tasks"}
"""Slots filled with a template of their own (from these phrasebook lists), itself filled."""

_SLOT_FILLERS: dict[str, Callable[[_Speech, Device], str]] = {
    "town": _town,
    "town2": lambda s, _: s.rng.choice([t for t in s.book.towns if t != s.h.town]),
    "contact": lambda s, _: s.rng.choice(s.h.contacts),
    "doctor": lambda s, _: s.h.doctor,
    "street": lambda s, _: s.h.street,
    "item": lambda s, _: s.rng.choice(s.book.items),
    "artist": _artist,
    "genre": lambda s, _: s.rng.choice(s.book.genres),
    "message": lambda s, _: s.rng.choice(s.book.messages),
    "food": lambda s, _: s.rng.choice(s.book.foods),
    "minutes": lambda s, _: str(s.rng.choice((1, 2, 3, 4, 5, 7, 8, 10, 12, 15, 20, 25, 30, 45))),
    "temp": lambda s, _: str(s.rng.randint(*s.book.temps)),
    "pct": lambda s, _: str(s.rng.choice((10, 20, 25, 30, 40, 50, 60, 70, 75, 80))),
    "weekday": lambda s, _: s.rng.choice(s.book.weekdays),
    "clock": _clock,
    "in_room": _in_room,
}
"""What fills each plain slot of a template: the household's own details, or a seeded pick."""

SLOTS = frozenset(_SLOT_FILLERS) | frozenset(_NESTED)
"""Every slot name a phrase template may use."""


def _pieces(raw: list[str]) -> list[str]:
    """The pieces of a filled template (its own text between the slots, each slot's value,
    nested templates already in pieces), tidied for speech. Punctuation sticks to the
    piece before it, so a town at the end of a question is rendered with its rising tone."""
    out: list[str] = []
    for piece in raw:
        piece = piece.strip()
        if not piece:
            continue
        if out and not piece[0].isalnum():
            head, _, rest = piece.partition(" ")
            out[-1] = f"{out[-1]} {head}" if head in "?!:;" else out[-1] + head
            if rest.strip():
                out.append(rest.strip())
        else:
            out.append(piece)
    # a lone short word between two slots ("an", "to") is said with what follows it: on its
    # own it would be a sentence of one syllable
    merged: list[str] = []
    for piece in out:
        if merged and len(merged[-1]) <= 3 and merged[-1].isalpha():
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: fine for the small daily rates used here."""
    limit = math.exp(-lam)
    k, p = 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in ".-")).lower()


def household_seed(world_seed: int, key: str) -> int:
    """A household's seed: a function of the world seed and its key only."""
    digest = hashlib.sha256(f"overheard/{world_seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


_FAKERS: dict[str, Faker] = {}


def _faker(locale: str, seed: int) -> Faker:
    # Building a Faker costs tens of milliseconds; one per locale, re-seeded per household,
    # gives the same values as a fresh seeded instance.
    fake = _FAKERS.get(locale)
    if fake is None:
        fake = _FAKERS[locale] = Faker(locale)
    fake.seed_instance(seed)
    return fake


def build_household(world_seed: int, spec: HouseholdSpec, locale: str,
                    engine: VoiceEngine = "speech") -> Household:
    """Draw one household from its own seed (independent of every other household).

    ``engine`` picks the members' voices (it draws nothing: the household is the same).
    """
    if locale not in PHRASEBOOKS:
        raise WorldError(f"unknown locale {locale!r}; known: {', '.join(LOCALES)}")
    book = PHRASEBOOKS[locale]
    seed = household_seed(world_seed, spec.key)
    rng = random.Random(seed)
    fake = _faker(locale, seed)

    n_members = spec.members if spec.members is not None else rng.choice((1, 2, 2, 2, 3, 3, 4))
    n_devices = spec.devices if spec.devices is not None else rng.choice((1, 1, 2, 2, 3))
    if n_members < 1 and n_devices > 0:
        raise WorldError(f"household {spec.key!r}: devices need at least one member")
    if n_members < 0 or n_devices < 0 or (spec.recordings is not None and spec.recordings < 0):
        raise WorldError(f"household {spec.key!r}: counts must not be negative")

    last = fake.last_name()
    kinds: list[VoiceKind] = []
    names: list[str] = []
    for i in range(n_members):
        kind: VoiceKind
        if i == 0:
            kind = rng.choice(("male", "female"))
        elif i == 1:  # a partner, most often of the other sex
            other: VoiceKind = "female" if kinds[0] == "male" else "male"
            kind = other if rng.random() < 0.85 else kinds[0]
        else:
            kind = "child"
        male = kind == "male" or (kind == "child" and rng.random() < 0.5)
        first = fake.first_name_male() if male else fake.first_name_female()
        surname = last if i != 1 or rng.random() < 0.7 else fake.last_name()
        kinds.append(kind)
        names.append(f"{first} {surname}")
    members = tuple(
        Speaker(f"{spec.key}.m{i + 1}", names[i], kinds[i], VoiceProfile.draw(rng, kinds[i]),
                locale, engine)
        for i in range(n_members)
    )
    holder_name = names[0] if names else f"{fake.first_name()} {last}"
    first, _, surname = holder_name.partition(" ")
    local = rng.choice((f"{first}.{surname}", f"{first[0]}.{surname}", f"{first}{surname}",
                        f"{first}.{surname}{rng.randint(1, 99)}"))
    email = f"{_ascii(local)}@{fake.free_email_domain()}"
    town = rng.choice(book.towns)
    street = fake.street_address().replace("\n", ", ")  # en_GB puts flat numbers on a line
    address = book.address.format(street=street, postcode=fake.postcode(), town=town)

    models = list(DEVICE_MODELS)
    rooms = list(ROOMS)
    weights = list(_ROOM_WEIGHTS)
    devices = []
    for _ in range(n_devices):
        if not rooms:
            rooms, weights = list(ROOMS), list(_ROOM_WEIGHTS)
        idx = rng.choices(range(len(rooms)), weights=weights)[0]
        room = rooms.pop(idx)
        weights.pop(idx)
        model = rng.choice(models)
        serial = DEVICE_MODELS[model] + f"{rng.randrange(10**10):010d}"
        devices.append(Device(serial, model, room))

    others = [n.split(" ")[0] for n in names[1:]]
    contacts = others + rng.sample(book.relations, rng.randint(1, 3))
    for _ in range(rng.randint(2, 5)):
        full = rng.random() < 0.5
        contacts.append(f"{fake.first_name()} {fake.last_name()}" if full else fake.first_name())
    hours_shift = rng.randint(-1, 2)
    hour_weights = tuple(round(_HOURS[(h - hours_shift) % 24] * rng.uniform(0.6, 1.4), 4)
                         for h in range(24))
    intent_weights = tuple(round(w * rng.uniform(0.3, 1.7), 4) for w in _INTENT_WEIGHTS)
    speaker_weights = tuple(
        1.0 if i == 0 else round(rng.uniform(0.3, 1.0) * (0.4 if k == "child" else 1.0), 4)
        for i, k in enumerate(kinds))
    device_weights = tuple(_ROOM_WEIGHTS[ROOMS.index(d.room)] for d in devices)
    rate = round(rng.uniform(3.0, 14.0) * (0.6 + 0.4 * max(1, n_members)), 3)
    return Household(
        key=spec.key, seed=seed, locale=locale,
        holder=Holder(holder_name, email, address, locale),
        members=members, devices=tuple(devices), town=town, street=street,
        doctor=fake.last_name(), contacts=tuple(contacts),
        artists=tuple(rng.sample(book.artists, 3)), rate_per_day=rate,
        hour_weights=hour_weights, intent_weights=intent_weights,
        speaker_weights=speaker_weights, device_weights=device_weights,
        recordings=spec.recordings,
    )


@dataclass(frozen=True)
class World:
    """All households of a run, and the start of the simulated clock."""

    seed: int
    locale: str
    start: datetime
    households: tuple[Household, ...]

    @classmethod
    def build(cls, seed: int, locale: str = "de_DE", households: Sequence[HouseholdSpec] = (),
              background: int = 0, start: datetime | None = None,
              voice: VoiceEngine = "speech") -> World:
        """Named households from ``households``, then ``background`` more keyed ``h001``...

        ``start`` (an aware datetime) defaults to a midnight in 2018 drawn from the seed.
        ``voice`` is ``"speech"`` (eSpeak NG) or ``"fast"`` (the letter splice).
        """
        if locale not in PHRASEBOOKS:
            raise WorldError(f"unknown locale {locale!r}; known: {', '.join(LOCALES)}")
        keys = [s.key for s in households]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise WorldError(f"duplicate household keys: {', '.join(dupes)}")
        specs = list(households)
        n = 0
        while len(specs) < len(households) + background:
            n += 1
            key = f"h{n:03d}"
            if key not in keys:
                specs.append(HouseholdSpec(key))
        built = [build_household(seed, s, s.locale or locale, voice) for s in specs]
        _make_unique(built)
        _name_holders(built, specs)
        if start is None:
            start = _EPOCH + timedelta(days=random.Random(f"overheard/{seed}/start").randrange(365))
        elif start.tzinfo is None:
            raise WorldError("start must be timezone-aware")
        return cls(seed, locale, start.astimezone(UTC), tuple(built))

    def household(self, key: str) -> Household:
        for h in self.households:
            if h.key == key:
                return h
        raise KeyError(key)

    def traffic(self, days: float, start: datetime | None = None,
                keys: Iterable[str] | None = None) -> list[Utterance]:
        """Every household's utterances over ``days`` from ``start`` (default: the world's).

        Sorted by time, then utterance id.
        """
        start = start or self.start
        wanted = set(keys) if keys is not None else None
        out: list[Utterance] = []
        for h in self.households:
            if wanted is None or h.key in wanted:
                out.extend(h.traffic(start, days))
        out.sort(key=lambda u: (u.recorded_at, u.utterance_id))
        return out

    def speaker(self, speaker_id: str) -> Speaker:
        key = speaker_id.rsplit(".", 1)[0]
        for s in self.household(key).members:
            if s.speaker_id == speaker_id:
                return s
        raise KeyError(speaker_id)


def _make_unique(households: list[Household]) -> None:
    """Emails and serials are unique across a world; a rare clash gets a deterministic suffix."""
    emails: set[str] = set()
    serials: set[str] = set()
    for i, h in enumerate(households):
        email = h.holder.email
        n = 1
        while email in emails:
            n += 1
            local, _, domain = h.holder.email.partition("@")
            email = f"{local}{n}@{domain}"
        emails.add(email)
        devices = []
        for d in h.devices:
            serial = d.serial
            while serial in serials:
                serial = serial[:6] + f"{(int(serial[6:]) + 1) % 10**10:010d}"
            serials.add(serial)
            devices.append(Device(serial, d.model, d.room))
        if email != h.holder.email or tuple(devices) != h.devices:
            holder = Holder(h.holder.name, email, h.holder.address, h.holder.locale)
            households[i] = replace(h, holder=holder, devices=tuple(devices))


def _name_holders(households: list[Household], specs: Sequence[HouseholdSpec]) -> None:
    """Holders a spec names: a look-alike takes the other holder's drawn name; a given name
    or email wins over what was drawn (and is kept as given, even if another has it)."""
    drawn = {h.key: h.holder.name for h in households}
    for i, (h, spec) in enumerate(zip(households, specs, strict=True)):
        name = h.holder.name
        if spec.lookalike_of:
            if spec.lookalike_of not in drawn:
                raise WorldError(f"household {spec.key!r}: lookalike_of names no household "
                                 f"({spec.lookalike_of!r})")
            name = drawn[spec.lookalike_of]
        name = spec.name or name
        email = spec.email or h.holder.email
        if (name, email) != (h.holder.name, h.holder.email):
            households[i] = replace(h, holder=replace(h.holder, name=name, email=email))
