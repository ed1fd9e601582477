"""Identifiability: clues read from leaked transcripts, held against the world's households."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulator.judge.identify import Clue, extract_clues, fits, identifiability, in_words, slots_of
from simulator.world.households import HouseholdSpec, World
from simulator.world.phrasebook import LOCALES

START = datetime(2018, 6, 1, tzinfo=UTC)


def _world(seed: int, locale: str, recordings: int) -> World:
    return World.build(seed, locale, households=[
        HouseholdSpec("requester", members=1, devices=0),
        HouseholdSpec("stranger", members=2, devices=2, recordings=recordings)],
        background=8, start=START)


def _said(world: World) -> list[str]:
    return [u.transcript for u in world.traffic(60, keys=["stranger"])]


def test_every_transcript_of_every_locale_is_understood() -> None:
    for locale in LOCALES:
        world = World.build(3, locale, background=5)
        utts = world.traffic(20)
        assert utts
        assert [u.transcript for u in utts if slots_of(u.transcript, u.locale) is None] == []


def test_slots_prefer_the_longer_phrase_and_known_words() -> None:
    assert slots_of("Ruf Anna auf dem Handy an.", "de-DE") == ("call", {"contact": "Anna"})
    assert slots_of("Wie wird das Wetter morgen in Bad Kissingen?", "de-DE") == (
        "weather", {"town": "Bad Kissingen"})
    # a full name followed by a message: the message is one of the language's phrases
    assert slots_of("Tell Berta Reinhardt I'm running late.", "en-GB") == (
        "message", {"contact": "Berta Reinhardt", "message": "I'm running late"})
    assert slots_of("Bonjour tout le monde", "fr-FR") is None


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("recordings", [1700, 60, 10])
def test_clues_never_contradict_the_true_household(locale: str, recordings: int) -> None:
    # judged on seeds and sizes the extraction was not tuned on: whatever it says must be
    # true of the household whose recordings leaked, so it is always among the matches
    for seed in range(1, 6):
        world = _world(seed, locale, recordings)
        ident = identifiability(_said(world), world.household("stranger").phrasebook.tag,
                                world)
        stranger = world.household("stranger")
        assert all(fits(stranger, c) for c in ident.clues), (seed, ident)
        assert ident.matching_households >= 1
        if recordings == 1700:
            assert ident.matching_households == 1
            assert {"town", "contact", "doctor"} <= {c.kind for c in ident.clues}


def test_a_handful_of_recordings_may_not_single_anyone_out() -> None:
    ks = [identifiability(_said(w), "de-DE", w).matching_households
          for w in (_world(seed, "de_DE", 10) for seed in range(1, 11))]
    assert max(ks) > 1  # honest: ten commands do not always identify a household
    assert min(ks) == 1


def test_town_needs_a_majority_of_weather_questions() -> None:
    said = ["Wie ist das Wetter in Bonn?", "Wie ist das Wetter in Bonn?",
            "Wie ist das Wetter in Kiel?", "Regnet es heute in Ulm?", "Ruf Mama an.",
            "Ruf Mama an."]
    clues = extract_clues(said, "de-DE")
    assert [c.kind for c in clues] == ["contact"]  # Bonn twice of four is no home town
    clues = extract_clues(said + ["Regnet es heute in Bonn?"], "de-DE")
    assert Clue("town", "Bonn", 3) in clues and Clue("contact", "Mama", 2) in clues


def test_in_words_names_the_clues_and_the_count() -> None:
    text = in_words({"clues": [{"kind": "town", "value": "Erlangen", "count": 31},
                               {"kind": "contact", "value": "Anna", "count": 4},
                               {"kind": "contact", "value": "Mama", "count": 2}],
                     "matching_households": 1, "households": 10})
    assert "the town Erlangen (31 times)" in text
    assert "the contacts Anna (4 times) and Mama (2 times)" in text
    assert "1 of 10 households" in text and "identified" in text
