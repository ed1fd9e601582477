"""Households and their utterances: seeded, independent, in their language, identifiable."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta
from importlib.resources import files

import pytest

from simulator.world import households
from simulator.world.households import (
    DEVICE_MODELS,
    ROOMS,
    HouseholdSpec,
    World,
    WorldError,
)
from simulator.world.phrasebook import (
    LOCALES,
    PHRASEBOOKS,
    PhrasebookError,
    load_phrasebook,
    parse_phrasebook,
)

SPECS = [HouseholdSpec("stranger", members=2, devices=2, recordings=300),
         HouseholdSpec("requester", members=1, devices=0)]


def _digest(world: World, days: float) -> list[tuple[object, ...]]:
    return [(u.utterance_id, u.household, u.device_serial, u.speaker.speaker_id,
             u.recorded_at_iso, u.transcript) for u in world.traffic(days)]


def test_same_seed_same_world_and_transcripts() -> None:
    a = World.build(7, "de_DE", households=SPECS, background=5)
    b = World.build(7, "de_DE", households=SPECS, background=5)
    assert a == b
    assert _digest(a, 3) == _digest(b, 3)
    c = World.build(8, "de_DE", households=SPECS, background=5)
    assert c.household("stranger").holder != a.household("stranger").holder
    assert _digest(c, 3) != _digest(a, 3)


def test_household_does_not_depend_on_the_others() -> None:
    small = World.build(3, "de_DE", households=SPECS)
    large = World.build(3, "de_DE", households=SPECS, background=20)
    assert small.household("stranger") == large.household("stranger")
    start = small.start
    assert [u.transcript for u in small.household("stranger").traffic(start, 5)] == \
        [u.transcript for u in large.household("stranger").traffic(start, 5)]


def test_spec_counts_keys_and_shapes() -> None:
    w = World.build(11, "en_GB", households=SPECS, background=3)
    assert [h.key for h in w.households] == ["stranger", "requester", "h001", "h002", "h003"]
    stranger = w.household("stranger")
    assert len(stranger.members) == 2 and len(stranger.devices) == 2
    assert [m.speaker_id for m in stranger.members] == ["stranger.m1", "stranger.m2"]
    for d in stranger.devices:
        assert d.model in DEVICE_MODELS and d.room in ROOMS
        assert len(d.serial) == 16 and d.serial.startswith(DEVICE_MODELS[d.model])
        assert d.serial[6:].isdigit()
    serials = [d.serial for h in w.households for d in h.devices]
    emails = [h.holder.email for h in w.households]
    assert len(set(serials)) == len(serials) and len(set(emails)) == len(emails)
    assert w.household("requester").traffic(w.start, 30) == []
    assert w.household("requester").phrasebook.tag == "en-GB"


def test_exact_recording_count_within_the_window() -> None:
    w = World.build(5, "fr_FR", households=SPECS)
    start = datetime(2018, 5, 1, tzinfo=UTC)
    utts = w.household("stranger").traffic(start, 10)
    assert len(utts) == 300
    assert all(start <= u.recorded_at < start + timedelta(days=10) for u in utts)
    assert [u.recorded_at for u in utts] == sorted(u.recorded_at for u in utts)
    assert len({u.utterance_id for u in utts}) == 300
    # both members speak and both devices hear
    assert {u.speaker.speaker_id for u in utts} == {"stranger.m1", "stranger.m2"}
    assert len({u.device_serial for u in utts}) == 2


def test_start_comes_from_the_seed_not_the_wall_clock() -> None:
    w = World.build(2018, "de_DE", background=1)
    assert w.start == World.build(2018, "de_DE", background=1).start
    assert w.start.year == 2018 and w.start.tzinfo is not None
    given = datetime(2020, 2, 2, tzinfo=UTC)
    assert World.build(1, background=1, start=given).start == given
    with pytest.raises(WorldError):
        World.build(1, background=1, start=datetime(2020, 2, 2))


@pytest.mark.parametrize(("locale", "words"), [
    ("de_DE", {"Wetter", "Einkaufsliste", "Licht", "Timer", "Erinnere", "Ruf", "Spiel"}),
    ("fr_FR", {"météo", "courses", "lumière", "minuteur", "Rappelle-moi", "Appelle", "Mets"}),
    ("en_US", {"weather", "shopping", "lights", "timer", "Remind", "Call", "Play", "thermostat"}),
    ("en_GB", {"weather", "shopping", "lights", "timer", "Remind", "Call", "Play", "heating"}),
])
def test_locales_speak_their_language(locale: str, words: set[str]) -> None:
    w = World.build(4, locale, households=[HouseholdSpec("x", members=2, devices=2,
                                                          recordings=400)])
    text = " ".join(u.transcript for u in w.traffic(30))
    found = {word for word in words if word in text}
    assert found == words
    assert all(u.locale == locale.replace("_", "-") for u in w.traffic(1))


def test_utterances_carry_identifying_detail() -> None:
    w = World.build(9, "de_DE", households=[HouseholdSpec("stranger", members=2,
                                                          recordings=1700)])
    h = w.household("stranger")
    text = [u.transcript for u in w.traffic(60)]
    assert sum(h.town in t for t in text) >= 50            # weather queries name the town
    named = [c for c in h.contacts if any(c in t for t in text)]
    assert len(named) >= len(h.contacts) - 1               # calls and messages name people
    assert any(h.doctor in t for t in text)
    assert any(h.street in t for t in text)                # a taxi to their street
    partner = h.members[1].name.split(" ")[0]
    assert partner in h.contacts
    assert h.town in h.holder.address


def test_time_of_day_follows_the_pattern() -> None:
    w = World.build(12, "en_GB", households=[HouseholdSpec("x", recordings=2000)])
    hours = [u.recorded_at.hour for u in w.traffic(30)]  # en_GB: local time is UTC
    night = sum(1 for hr in hours if 1 <= hr <= 4)
    evening = sum(1 for hr in hours if 17 <= hr <= 21)
    assert evening > 8 * max(night, 1)


def test_rate_scales_with_days_and_differs_per_household() -> None:
    w = World.build(13, "de_DE", background=6)
    per = [len(h.traffic(w.start, 20)) for h in w.households]
    assert len(set(per)) > 1
    h = w.households[0]
    assert 0.5 * 20 * h.rate_per_day < len(h.traffic(w.start, 20)) < 1.5 * 20 * h.rate_per_day


def test_bad_specs_are_refused() -> None:
    with pytest.raises(WorldError, match="unknown locale"):
        World.build(1, "xx_XX", background=1)
    with pytest.raises(WorldError, match="duplicate"):
        World.build(1, households=[HouseholdSpec("a"), HouseholdSpec("a")])
    with pytest.raises(WorldError, match="member"):
        World.build(1, households=[HouseholdSpec("a", members=0, devices=1)])


def test_every_phrase_names_only_slots_the_filler_knows() -> None:
    """The phrase files are data: a slot misspelt there would only fail when drawn."""
    formatter = string.Formatter()
    for locale in LOCALES:
        book = PHRASEBOOKS[locale]
        assert set(book.templates) == set(households._INTENTS), locale
        assert set(book.in_room) == set(households.ROOMS), locale
        phrases = [t for ts in book.templates.values() for t in ts] + [*book.whens, *book.tasks]
        named = {field for p in phrases for _, field, _, _ in formatter.parse(p) if field}
        assert named <= households.SLOTS, (locale, named - households.SLOTS)
        assert {"town", "contact", "when", "task"} <= named


def test_the_locales_are_the_phrase_files() -> None:
    """A scenario may name exactly the locales that have a phrase file: one list, the
    Literal a scenario's ``locale`` is validated against."""
    shipped = {p.name.removesuffix(".toml") for p in (files("simulator.world") / "phrases").iterdir()
               if p.name.endswith(".toml")}
    assert set(LOCALES) == shipped == set(PHRASEBOOKS)


def test_a_broken_phrase_file_is_named_with_its_field() -> None:
    text = (files("simulator.world") / "phrases" / "de_DE.toml").read_text(encoding="utf-8")
    assert parse_phrasebook(text, "x.toml") == PHRASEBOOKS["de_DE"]
    no_towns = re.sub(r"^towns = \[.*?^\]$", "towns = 3", text, count=1, flags=re.S | re.M)
    with pytest.raises(PhrasebookError, match=r"^x\.toml: towns: "):
        parse_phrasebook(no_towns, "x.toml")
    with pytest.raises(PhrasebookError, match=r"x\.toml: .*unknown_field"):
        parse_phrasebook(text.replace("tag =", "unknown_field = 1\ntag =", 1), "x.toml")
    with pytest.raises(PhrasebookError, match=r"phrases/xx_XX\.toml: no such phrase file"):
        load_phrasebook("xx_XX")


@pytest.mark.parametrize(("locale", "hour", "minute", "said"), [
    ("de_DE", 7, 0, "7 Uhr"), ("de_DE", 18, 30, "18 Uhr 30"), ("fr_FR", 7, 0, "7 h"),
    ("fr_FR", 9, 5, "9 h 05"), ("en_US", 0, 15, "12:15 am"), ("en_US", 19, 0, "7:00 pm"),
    ("en_GB", 7, 0, "7:00"), ("en_GB", 16, 45, "16:45")])
def test_a_time_of_day_is_said_the_local_way(locale: str, hour: int, minute: int,
                                             said: str) -> None:
    assert PHRASEBOOKS[locale].say_time(hour, minute) == said
