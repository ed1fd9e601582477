"""`overheard bench synth`: how fast utterances are made on one core, cold and warm.

A world of ``households`` speaks for a week; every utterance is synthesised three times:

- *cold*: an empty render cache (a fresh directory, nothing in memory): every phrase and
  slot word is rendered by eSpeak NG on first use;
- *disk*: nothing in memory, every render read back from the disk cache (a second run);
- *warm*: everything in memory (the rest of a long run).

The floor is the simplest way to produce the same speech from the same warm renders:
joining each utterance's cached pieces, without the pauses, the noise floor and the
signature that make every recording its own.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter  # measuring, not simulating: the only clock read here

from contract.audio import BYTES_PER_SECOND
from simulator.world.audio import VoiceEngine
from simulator.world.households import HouseholdSpec, Utterance, World
from simulator.world.speech import RENDERS


@dataclass(frozen=True)
class SynthFigures:
    """One measured run."""

    voice: str
    utterances: int
    speakers: int
    audio_seconds: float
    text_seconds: float
    cold_seconds: float
    disk_seconds: float
    warm_seconds: float
    floor_seconds: float
    rendered: int
    """Renders eSpeak NG made in the cold pass (phrases and slot words)."""

    def rate(self, seconds: float) -> float:
        return self.utterances / seconds if seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, float | int | str]:
        return {"voice": self.voice, "utterances": self.utterances, "speakers": self.speakers,
                "mean_audio_seconds": round(self.audio_seconds / self.utterances, 3),
                "renders": self.rendered,
                "text_per_s": round(self.rate(self.text_seconds)),
                "cold_per_s": round(self.rate(self.cold_seconds)),
                "disk_per_s": round(self.rate(self.disk_seconds)),
                "warm_per_s": round(self.rate(self.warm_seconds)),
                "floor_per_s": round(self.rate(self.floor_seconds)),
                "warm_vs_floor": round(self.floor_seconds / self.warm_seconds, 2)
                if self.warm_seconds > 0 else 0.0}


def _synthesise(utts: list[Utterance]) -> tuple[float, int]:
    t0 = perf_counter()
    total = 0
    for u in utts:  # keep none: a fleet holds only what is in flight
        total += len(u.pcm())
    return perf_counter() - t0, total


def _floor(utts: list[Utterance]) -> float:
    t0 = perf_counter()
    for u in utts:
        voice = u.speaker.voice
        render = getattr(voice, "render", None)
        if render is None:  # the splice voice has no pieces to join
            voice.say_parts(u.parts, u.utterance_id)
        else:
            b"".join([render(p) for p in u.parts])
    return perf_counter() - t0


def run(utterances: int = 20_000, households: int = 50, seed: int = 1, locale: str = "de_DE",
        voice: VoiceEngine = "speech") -> SynthFigures:
    """Measure text generation and the three synthesis passes (one core)."""
    per = max(1, utterances // households)
    world = World.build(seed, locale, households=[
        HouseholdSpec(f"h{i + 1:03d}", recordings=per, devices=max(1, (i % 3)))
        for i in range(households)], voice=voice)
    t0 = perf_counter()
    utts = world.traffic(days=7)
    text = perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="overheard-bench-") as tmp, \
            RENDERS.rooted(Path(tmp)):
        before = RENDERS.rendered
        cold, total = _synthesise(utts)
        rendered = RENDERS.rendered - before
        RENDERS.clear_memory()
        disk, _ = _synthesise(utts)
        warm, _ = _synthesise(utts)
        floor = _floor(utts)
    speakers = sum(len(h.members) for h in world.households)
    return SynthFigures(voice, len(utts), speakers, total / BYTES_PER_SECOND, text, cold, disk, warm, floor,
                        rendered)


def table(f: SynthFigures) -> str:
    """The figures for a person."""
    return "\n".join([
        f"bench synth ({f.voice} voice): {f.utterances} utterances, {f.speakers} speakers, "
        f"{f.audio_seconds / f.utterances:.2f} s audio each",
        f"  text generation       {f.rate(f.text_seconds):>9,.0f} utterances/s",
        f"  synthesis, cold       {f.rate(f.cold_seconds):>9,.0f} utterances/s "
        f"({f.rendered:,} phrases and words rendered)",
        f"  synthesis, from disk  {f.rate(f.disk_seconds):>9,.0f} utterances/s",
        f"  synthesis, warm       {f.rate(f.warm_seconds):>9,.0f} utterances/s",
        f"  floor (join renders)  {f.rate(f.floor_seconds):>9,.0f} utterances/s "
        f"(warm is {f.floor_seconds / f.warm_seconds if f.warm_seconds else 0:.2f}x the floor)",
    ])
