"""Voices: deterministic, distinct per speaker and per utterance, valid 16 kHz WAV.

The eSpeak NG voice (the default) and the letter splice (``--voice fast``) both.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import wave
from array import array
from io import BytesIO
from pathlib import Path

import pytest

from simulator.world.audio import (
    RATE,
    SpeechVoice,
    SpliceVoice,
    VoiceKind,
    VoiceProfile,
    duration_ms,
    pcm_to_wav_bytes,
    wav_to_pcm,
)
from simulator.world.households import HouseholdSpec, World
from simulator.world.phrasebook import LOCALES
from simulator.world.speech import CACHE_ENV, LANGUAGES, VARIANTS, EspeakVoice, RenderCache

TEXT = "Wie wird das Wetter morgen in Bad Kissingen?"


def _voice(seed: int, kind: VoiceKind = "female") -> SpliceVoice:
    return SpliceVoice(VoiceProfile.draw(random.Random(seed), kind))


def _speech(seed: int, kind: VoiceKind = "female", locale: str = "de_DE") -> SpeechVoice:
    return SpeechVoice(VoiceProfile.draw(random.Random(seed), kind), locale, kind)


def _pitch(pcm: bytes) -> float:
    """Fundamental frequency by autocorrelation over a steady stretch of a vowel."""
    s = array("h", pcm)
    first = next(i for i, x in enumerate(s) if abs(x) > 3000)
    w = s[first + 600:first + 1400]
    best = max(range(40, 200), key=lambda lag: sum(a * b for a, b in zip(w, w[lag:], strict=False)) / (len(w) - lag))
    return RATE / best


def test_same_seed_same_bytes() -> None:
    a = _voice(1).say(TEXT, "u1")
    b = _voice(1).say(TEXT, "u1")
    assert a == b
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
    assert _voice(2).say(TEXT, "u1") != a


def test_speakers_differ_in_pitch_and_tempo() -> None:
    man = _voice(3, "male")
    woman = _voice(3, "female")
    child = _voice(3, "child")
    assert man.profile.f0 < woman.profile.f0 < child.profile.f0
    pitches = [_pitch(v.say("aaaaaaaa")) for v in (man, woman, child)]
    for voice, pitch in zip((man, woman, child), pitches, strict=True):
        assert abs(pitch - voice.profile.f0) < 0.12 * voice.profile.f0
    assert pitches[0] < pitches[1] < pitches[2]
    slow = SpliceVoice(VoiceProfile(120.0, 1.0, 0.5, 0.1, 0.85, 0.5, 1))
    fast = SpliceVoice(VoiceProfile(120.0, 1.0, 0.5, 0.1, 1.2, 0.5, 1))
    assert len(fast.say(TEXT)) < 0.8 * len(slow.say(TEXT))


def test_text_shapes_the_audio() -> None:
    v = _voice(4)
    short, long_ = v.say("Pause."), v.say("Setz Hafermilch und Toilettenpapier auf die Liste.")
    assert duration_ms(long_) > 2 * duration_ms(short)
    assert v.say("Ruf Mama an.") != v.say("Ruf Papa an.")
    # roughly 2 s for a typical request, with signal in it (not silence)
    pcm = v.say(TEXT)
    assert 1500 < duration_ms(pcm) < 4500
    assert max(abs(x) for x in array("h", pcm)) > 8000


def test_no_two_utterances_are_byte_identical() -> None:
    world = World.build(5, "de_DE", households=[HouseholdSpec("x", members=2, recordings=600)])
    utts = world.traffic(3)
    digests = [hashlib.sha256(u.pcm()).hexdigest() for u in utts]
    assert len(set(digests)) == len(utts)
    texts = [u.transcript for u in utts]
    assert len(set(texts)) < len(texts)  # repeated sentences, still distinct recordings
    v = _voice(6)
    assert v.say("Lauter.", "a") != v.say("Lauter.", "b")
    assert v.say("Lauter.", "a") == v.say("Lauter.", "a")


def test_world_audio_is_deterministic_per_seed() -> None:
    def run(seed: int) -> list[str]:
        w = World.build(seed, "fr_FR", background=3)
        return [hashlib.sha256(u.pcm()).hexdigest() for u in w.traffic(1)]

    assert run(21) == run(21)
    assert run(21) != run(22)


def test_wav_opens_at_16k_mono_16bit() -> None:
    pcm = _voice(7).say(TEXT, "x")
    data = pcm_to_wav_bytes(pcm)
    with wave.open(BytesIO(data), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        assert w.getnframes() == len(pcm) // 2
        assert w.readframes(w.getnframes()) == pcm
    assert wav_to_pcm(data) == (pcm, RATE, 2, 1)


def test_every_character_has_a_sound() -> None:
    v = _voice(8)
    for text in ("Ça coûte 12,50 € ?", "Grüße aus Köln – 1 2 3!", "ß ÿ ñ 😀", ""):
        pcm = v.say(text)
        assert len(pcm) % 2 == 0 and len(pcm) > 0
    assert duration_ms(v.say("1 2 3")) > duration_ms(v.say(""))


def test_segment_is_a_pydub_view_of_the_same_pcm() -> None:
    v = _voice(9)
    seg = v.segment(TEXT, "s")
    assert seg.raw_data == v.say(TEXT, "s")
    assert (seg.frame_rate, seg.channels, seg.sample_width) == (RATE, 1, 2)


def test_synthesis_runs_many_utterances() -> None:
    # functional only: a few thousand utterances through one voice without trouble
    v = _voice(10)
    world = World.build(10, "en_US", households=[HouseholdSpec("x", recordings=2000)])
    total = sum(len(v.say(u.transcript, u.utterance_id)) for u in world.traffic(5))
    assert total > 2000 * RATE  # well over a second each on average


# -- eSpeak NG speech -----------------------------------------------------------------------


def _mean_pitch(pcm: bytes) -> float:
    """Median pitch over the loud 40 ms windows, by autocorrelation (60-400 Hz)."""
    s = array("h", pcm)
    found = []
    for start in range(0, len(s) - 640, 640):
        w = s[start:start + 640]
        if max(map(abs, w)) < 3000:
            continue
        lag = max(range(40, 267), key=lambda k: sum(a * b for a, b in zip(w, w[k:], strict=False)) / (640 - k))
        found.append(RATE / lag)
    found.sort()
    return found[len(found) // 2]


def test_speakers_differ_and_same_speaker_text_and_id_give_the_same_bytes() -> None:
    voices = [_speech(seed, kind) for seed, kind in ((1, "female"), (2, "female"), (1, "male"),
                                                    (3, "child"))]
    renders = [v.say(TEXT, "utt-1") for v in voices]
    assert len({hashlib.sha256(r).digest() for r in renders}) == len(renders)
    assert len({v.key for v in voices}) == len(voices)
    again = _speech(1, "female")  # a new voice object: nothing shared but the cache
    assert again.say(TEXT, "utt-1") == renders[0]
    assert again.say(TEXT, "utt-2") != renders[0]
    assert abs(len(again.say(TEXT, "utt-2")) - len(renders[0])) < 0.2 * len(renders[0])


def test_speech_pitch_follows_the_speaker() -> None:
    man, woman, child = _speech(3, "male"), _speech(3, "female"), _speech(3, "child")
    pitches = [_mean_pitch(v.say("Wie wird das Wetter morgen in Erlangen?"))
               for v in (man, woman, child)]
    assert pitches[0] < 160 < pitches[1]
    assert pitches[0] < pitches[1] < pitches[2]


@pytest.mark.parametrize("locale", LOCALES)
def test_every_locale_speaks_its_language(locale: str) -> None:
    world = World.build(31, locale, households=[HouseholdSpec("x", members=2, recordings=40)])
    utts = world.traffic(5)
    for u in utts[:10]:
        assert "".join(u.parts).replace(" ", "") == u.transcript.replace(" ", "")
        pcm = u.pcm()
        assert 500 < duration_ms(pcm) < 9000
        assert max(abs(x) for x in array("h", pcm)) > 4000
    member = world.household("x").members[0]
    assert member.voice.espeak.language.endswith(  # type: ignore[attr-defined]
        {"de_DE": "de", "fr_FR": "fr", "en_US": "en-US", "en_GB": "en"}[locale])


def test_render_does_not_depend_on_what_was_said_before(tmp_path: Path) -> None:
    # eSpeak NG keeps state between syntheses; the voice file switches it off. A fresh
    # process with an empty cache must render the same bytes as this one after others.
    for text in ("Spiel Rammstein im Wohnzimmer!", "Ruf Oma an.", "Papa"):
        _speech(5, "male").say(text, "x")
        _speech(6, "female", "fr_FR").say(text, "x")
    here = _speech(7, "male").say(TEXT, "u").hex()
    code = ("import random; from simulator.world.audio import SpeechVoice, VoiceProfile;"
            "p = VoiceProfile.draw(random.Random(7), 'male');"
            f"print(SpeechVoice(p, 'de_DE', 'male').say({TEXT!r}, 'u').hex())")
    env = {**os.environ, CACHE_ENV: str(tmp_path / "fresh")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == here


def test_every_variant_renders_the_same_in_any_order(tmp_path: Path) -> None:
    # echo buffers, breath resonators, flutter and roughness counters survive from one
    # synthesis to the next inside eSpeak NG; a render must not depend on them
    voices = [EspeakVoice(LANGUAGES[locale], variant, (90 + 10 * i, 150 + 10 * i), 1.0, 190, 1.0)
              for i, (locale, variant) in enumerate(
                  (loc, v) for loc in LOCALES for v in sorted({*VARIANTS["male"],
                                                              *VARIANTS["female"]}))
              if i % 3 == 0 or locale == "de_DE"]
    pieces = ["Ruf", "Mama", "an.", "Wie wird das Wetter morgen in", "Bad Kissingen?", "45"]
    jobs = [(v, p) for v in voices for p in pieces]
    first = {(v.key, p): RenderCache(tmp_path / "a").get(v, v.key, p) for v, p in jobs}
    shuffled = list(jobs)
    random.Random(3).shuffle(shuffled)
    cache = RenderCache(tmp_path / "b")
    again = {(v.key, p): cache.get(v, v.key, p) for v, p in shuffled}
    assert cache.rendered == len(jobs)
    assert [k for k in first if first[k] != again[k]] == []


def test_renders_are_cached_in_memory_and_on_disk(tmp_path: Path) -> None:
    voice = _speech(8, "female").espeak
    first = RenderCache(tmp_path)
    pcm = first.get(voice, voice.key, "Erlangen")
    assert (first.rendered, first.loaded) == (1, 0)
    assert first.get(voice, voice.key, "Erlangen") is pcm  # memory
    second = RenderCache(tmp_path)
    assert second.get(voice, voice.key, "Erlangen") == pcm
    assert (second.rendered, second.loaded) == (0, 1)
    assert len(list(tmp_path.rglob("*.pcm"))) == 1
    other = _speech(9, "male").espeak
    assert second.get(other, other.key, "Erlangen") != pcm
