"""Voices: deterministic audio of what a speaker says, 16 kHz mono s16le PCM.

Each speaker gets a :class:`VoiceProfile` (pitch, formant scale, brightness, breathiness,
tempo, loudness). Two voices read it:

- :class:`SpeechVoice` (the default, ``--voice speech``): intelligible speech from eSpeak NG
  (:mod:`simulator.world.speech`), in the household's language, one distinct voice per speaker
  (voice variant, pitch range, speaking rate, formant frequencies, loudness). An utterance
  is assembled from cached renders of its phrases and slot words (names, towns, items), so
  once a speaker's phrases are rendered, synthesis is a dictionary walk, a join and one
  pass of ``audioop`` over the result: thousands of utterances a second on one core.
- :class:`SpliceVoice` (``--voice fast``): speech-like but unintelligible; it renders the
  speaker's sound units once (a pulse train folded through formant resonators for vowels
  and sonorants, shaped noise for fricatives and bursts) and splices them letter by letter.
  It needs no cache and no rendering per phrase: for benches and simulations with
  hundreds of speakers where nobody listens.

Determinism: an utterance depends on the profile, the text and a ``salt`` (the utterance
id). The salt picks the length of the lead-in and of the pauses, the stretch of the
microphone's noise floor laid under the whole recording and a short inaudible signature
after it. Two utterances with a different text, speaker or salt therefore never share
bytes. Nothing here reads the global ``random`` module or the clock.
"""

from __future__ import annotations

import hashlib
import math
import random
import unicodedata
import warnings
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

from contract.audio import BYTES_PER_SECOND, CHANNELS, RATE, WIDTH, pcm_to_wav, read_wav
from contract.audio import duration_ms as _duration_ms
from simulator.world.speech import LANGUAGES, RENDERS, VARIANTS, EspeakVoice

with warnings.catch_warnings():
    # deprecated in 3.11, provided by audioop-lts from 3.13; the C speed is the point
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

with warnings.catch_warnings():
    # pydub warns at import that ffmpeg is missing; WAV and raw PCM need no ffmpeg.
    warnings.filterwarnings("ignore", message="Couldn't find ffmpeg or avconv", category=RuntimeWarning)
    from pydub import AudioSegment

__all__ = ["BYTES_PER_SECOND", "CHANNELS", "RATE", "WIDTH"]  # the format, for this room's users

VoiceKind = Literal["male", "female", "child"]

# Formants (centre Hz, bandwidth Hz, relative amplitude) of the voiced units, after
# Peterson & Barney's averages; sonorants are weaker and lower.
_FORMANTS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "a": ((730, 90, 1.0), (1090, 110, 0.55), (2440, 170, 0.25)),
    "e": ((530, 70, 1.0), (1840, 110, 0.6), (2480, 160, 0.3)),
    "i": ((270, 60, 1.0), (2290, 120, 0.5), (3010, 200, 0.3)),
    "o": ((570, 80, 1.0), (840, 90, 0.65), (2410, 170, 0.2)),
    "u": ((300, 60, 1.0), (870, 90, 0.4), (2240, 170, 0.15)),
    "m": ((250, 60, 1.0), (1000, 200, 0.1), (2200, 250, 0.05)),
    "n": ((250, 60, 1.0), (1500, 200, 0.15), (2500, 250, 0.05)),
    "l": ((360, 70, 1.0), (1300, 150, 0.3), (2700, 200, 0.1)),
    "r": ((450, 90, 1.0), (1250, 130, 0.35), (1600, 200, 0.2)),
    "w": ((300, 70, 1.0), (700, 120, 0.3), (2200, 250, 0.05)),
    "j": ((280, 60, 1.0), (2200, 150, 0.4), (3000, 250, 0.15)),
}
_VOWELS = "aeiou"
_SONORANTS = "mnlrwj"
_PITCH_STEPS = (0.93, 1.0, 1.08)
"""Pitch variants of each voiced unit: falling, level and rising intonation."""

# Character classes after lower-casing and stripping accents.
_CLASS: dict[str, str] = {}
for _ch in _VOWELS:
    _CLASS[_ch] = "V"
_CLASS["y"] = "V"
for _ch in _SONORANTS:
    _CLASS[_ch] = "S"
for _ch in "szcx":
    _CLASS[_ch] = "Fs"
for _ch in "fv":
    _CLASS[_ch] = "Ff"
_CLASS["h"] = "Fh"
for _ch in "ptkq":
    _CLASS[_ch] = "P"
for _ch in "bdg":
    _CLASS[_ch] = "B"
_CLASS[" "] = "_"
for _ch in ",;:-–":
    _CLASS[_ch] = ","
for _ch in ".?!…":
    _CLASS[_ch] = "."

_DIGITS = {
    "0": "zero", "1": "wan", "2": "tu", "3": "sri", "4": "for",
    "5": "faif", "6": "siks", "7": "seven", "8": "eit", "9": "nain",
}


def _normalise(text: str) -> str:
    """Lower-case, spell digits, and fold accents (ä→a, ç→c, ß→s) so every letter has a unit."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFKD", text.lower()):
        if ch in _CLASS:
            out.append(ch)
        elif ch in _DIGITS:
            out.append(_DIGITS[ch])
        elif ch == "ß":
            out.append("s")
        # combining marks and anything without a sound are dropped
    return "".join(out)


def _noise(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(-1.0, 1.0) for _ in range(n)]


def _highpass(x: list[float]) -> list[float]:
    """First difference: hiss for s-like sounds."""
    return [x[i] - x[i - 1] for i in range(1, len(x))]


def _lowpass(x: list[float], a: float) -> list[float]:
    out: list[float] = []
    y = 0.0
    for v in x:
        y += a * (v - y)
        out.append(y)
    return out


def _peak_normalise(x: list[float]) -> list[float]:
    peak = max(abs(v) for v in x) or 1.0
    return [v / peak for v in x]


# Shared noise sources, computed once from fixed seeds; each speaker reads them at its own
# offsets and with its own envelope and gain.
_NOISE_LEN = 8000
_NOISE = {
    "Fs": _peak_normalise(_highpass(_noise(0x5A, _NOISE_LEN + 1))),
    "Ff": _peak_normalise(_lowpass(_noise(0xF0, _NOISE_LEN), 0.35)),
    "Fh": _peak_normalise(_lowpass(_noise(0x0B, _NOISE_LEN), 0.15)),
}
_ROOM_TONE = array("h", (int(v * 40) for v in _noise(0x2007, 2 * RATE))).tobytes()
"""Two seconds of very quiet noise: the microphone's floor before the speech starts."""


@dataclass(frozen=True)
class VoiceProfile:
    """How one speaker sounds. Deterministic from the seed that drew it."""

    f0: float
    """Fundamental frequency (pitch), Hz."""
    formant_scale: float
    """Vocal tract size: formants are multiplied by this (children > women > men)."""
    brightness: float
    """0..1: 1 keeps the upper harmonics, 0 muffles them."""
    breathiness: float
    """0..0.4: noise mixed into voiced sounds."""
    tempo: float
    """Speech rate multiplier: 1.2 speaks 20% faster."""
    loudness: float
    """Peak amplitude as a fraction of full scale."""
    seed: int
    """Seeds the speaker's noise offsets and phase details."""

    @classmethod
    def draw(cls, rng: random.Random, kind: VoiceKind) -> VoiceProfile:
        """A plausible voice of ``kind`` from ``rng``."""
        f0_range, scale_range = {
            "male": ((85.0, 155.0), (0.90, 1.02)),
            "female": ((165.0, 255.0), (1.05, 1.17)),
            "child": ((240.0, 330.0), (1.18, 1.30)),
        }[kind]
        return cls(
            f0=round(rng.uniform(*f0_range), 1),
            formant_scale=round(rng.uniform(*scale_range), 3),
            brightness=round(rng.uniform(0.2, 1.0), 3),
            breathiness=round(rng.uniform(0.0, 0.35), 3),
            tempo=round(rng.uniform(0.82, 1.22), 3),
            loudness=round(rng.uniform(0.35, 0.6), 3),
            seed=rng.getrandbits(32),
        )


def _resonator_response(formants: tuple[tuple[float, float, float], ...], scale: float,
                        length: int) -> list[float]:
    """Impulse response of parallel two-pole resonators (one per formant)."""
    h = [0.0] * length
    for freq, bw, amp in formants:
        f = min(freq * scale, RATE * 0.45)
        r = math.exp(-math.pi * bw / RATE)
        c1 = 2.0 * r * math.cos(2.0 * math.pi * f / RATE)
        c2 = -r * r
        y1 = y2 = 0.0
        x = amp
        for t in range(length):
            y = x + c1 * y1 + c2 * y2
            h[t] += y
            y2, y1, x = y1, y, 0.0
    return h


def _fold(h: list[float], period: int) -> list[float]:
    """One period of a pulse train of ``period`` samples filtered by ``h`` (steady state)."""
    w = h[:period] + [0.0] * max(0, period - len(h))
    for start in range(period, len(h), period):
        chunk = h[start:start + period]
        w[:len(chunk)] = [a + b for a, b in zip(w, chunk, strict=False)]
    mean = sum(w) / period
    return [v - mean for v in w]


def _to_pcm(samples: list[float]) -> bytes:
    # Every caller scales to at most 0.6 of full scale, so no clipping is needed.
    return array("h", map(int, samples)).tobytes()


def _ramp_ends(samples: list[float], n: int) -> list[float]:
    """Fade in and out over ``n`` samples so spliced units do not click."""
    n = min(n, len(samples) // 2)
    out = list(samples)
    for i in range(n):
        g = i / n
        out[i] *= g
        out[-1 - i] *= g
    return out


_NOISE_REF = 0.5
"""Loudness the shared noise units are rendered at; a speaker's gain is applied after."""
_NOISE_VARIANTS = 8
_NOISE_GAIN = {"Fs": 0.35, "Ff": 0.3, "Fh": 0.25, "burst": 0.5}


def _filter_response(ch: str, scale: float, brightness: float) -> list[float]:
    """The vocal tract of a sound for a tract size and brightness, quantised so that
    speakers with nearly the same tract share the computation (their pitch stays theirs)."""
    return _filter_response_q(ch, round(scale / 0.02), round(brightness * 10))


@lru_cache(maxsize=4096)
def _filter_response_q(ch: str, scale_steps: int, brightness_tenths: int) -> list[float]:
    smooth = 0.25 + 0.075 * brightness_tenths  # one-pole low-pass: less = darker voice
    return _lowpass(_resonator_response(_FORMANTS[ch], scale_steps * 0.02, 360), smooth)


@lru_cache(maxsize=4096)
def _noise_unit(kind: str, variant: int, n: int) -> bytes:
    """A faded noise burst of ``n`` samples at the reference loudness, shared by speakers."""
    source = _NOISE["Fs" if kind == "burst" else kind]
    off = (variant * 977 + n * 13) % (_NOISE_LEN - n)
    level = _NOISE_REF * 32767 * _NOISE_GAIN[kind]
    seg = [v * level for v in source[off:off + n]]
    return _to_pcm(_ramp_ends(seg, n // (4 if kind == "burst" else 3)))


def _with_gain(pcm: bytes, db: float) -> bytes:
    """``pcm`` louder or quieter by ``db`` decibels (pydub; the arithmetic runs in C)."""
    seg = AudioSegment(pcm, sample_width=WIDTH, frame_rate=RATE, channels=CHANNELS)
    louder: bytes = seg.apply_gain(db).raw_data
    return louder


class SpliceVoice:
    """One speaker's units, rendered once; :meth:`say` splices them by text (``--voice fast``)."""

    def __init__(self, profile: VoiceProfile) -> None:
        self.profile = profile
        self._key = profile.seed.to_bytes(8, "little") + repr(profile).encode()
        self._units: dict[str, tuple[bytes, ...]] = {}
        self._render()

    # -- rendering ---------------------------------------------------------------
    def _render(self) -> None:
        p = self.profile
        rng = random.Random(p.seed)
        amp = p.loudness * 32767
        tempo = p.tempo
        base_period = RATE / p.f0
        breath = _NOISE["Fh"]
        for ch in _FORMANTS:
            h = _filter_response(ch, p.formant_scale, p.brightness)
            sonorant = ch in _SONORANTS
            level = amp * (0.45 if sonorant else 1.0)
            variants: list[bytes] = []
            # Sonorants are short and weak: one pitch is enough (fewer units to render).
            for step in (1.0,) if sonorant else _PITCH_STEPS:
                period = max(16, round(base_period / step))
                off = rng.randrange(_NOISE_LEN - period)
                c = p.breathiness * 0.6
                w = [v + c * b for v, b in zip(_fold(h, period), breath[off:off + period],
                                               strict=True)]
                k = level / (max(map(abs, w)) or 1.0)
                # Only one period at each end needs per-sample work (the fades); the steady
                # part is the period's bytes repeated.
                step_k = k / period
                head = _to_pcm([v * i * step_k for i, v in enumerate(w)])
                tail = _to_pcm([v * (period - i) * step_k for i, v in enumerate(w)])
                steady = _to_pcm([v * k for v in w])
                # short and long realisations of the same sound
                for dur in ((0.045, 0.07) if sonorant else (0.06, 0.1)):
                    n = max(2, round(dur / tempo * RATE / period))
                    variants.append(head + steady * (n - 2) + tail)
            self._units[ch] = tuple(variants * 3) if sonorant else tuple(variants)
        self._units["y"] = self._units["i"]
        gain_db = 20.0 * math.log10(p.loudness / _NOISE_REF)
        picks = rng.sample(range(_NOISE_VARIANTS), 3)
        for kind, dur in (("Fs", 0.065), ("Ff", 0.055), ("Fh", 0.045)):
            n = round(dur / tempo * RATE / 80) * 80  # 5 ms steps: speakers share units
            self._units[kind] = tuple(_with_gain(_noise_unit(kind, v, n), gain_db) for v in picks)
        # plosives: a closure (silence, or a voice bar for b/d/g) and a short burst
        closure = bytes(2 * round(0.025 / tempo * RATE))
        bursts = [_with_gain(_noise_unit("burst", v, round(0.012 * RATE)), gain_db)
                  for v in picks]
        voice_bar = _with_gain(self._units["m"][0][: len(closure)], -9.0)
        self._units["P"] = tuple(closure + b for b in bursts)
        self._units["B"] = tuple(voice_bar + b for b in bursts)
        self._units["_"] = (bytes(2 * round(0.04 / tempo * RATE)),)
        self._units[","] = (bytes(2 * round(0.14 / tempo * RATE)),)
        self._units["."] = (bytes(2 * round(0.2 / tempo * RATE)),)

    # -- synthesis ---------------------------------------------------------------
    def say(self, text: str, salt: str | bytes = b"") -> bytes:
        """PCM (16 kHz mono s16le) of this speaker saying ``text``.

        ``salt`` (e.g. the utterance id) varies intonation, lead-in and signature, so the
        same sentence said twice is two recordings, not one copied.
        """
        if isinstance(salt, str):
            salt = salt.encode()
        digest = hashlib.sha256(self._key + b"\0" + salt + b"\0" + text.encode()).digest()
        norm = _normalise(text)
        units = self._units
        lead = 2 * (RATE // 16 + (digest[0] | digest[1] << 8) % (RATE // 10))  # 60-160 ms
        off = 2 * ((digest[2] | digest[3] << 8) % (len(_ROOM_TONE) // 2 - lead // 2))
        parts = [_ROOM_TONE[off:off + lead]]
        question = text.rstrip().endswith("?")
        tail = len(norm) - 8
        for i, ch in enumerate(norm):
            cls = _CLASS[ch]
            if cls == "V" or cls == "S":
                b = digest[(i + 4) & 31] + i
                if i >= tail:
                    pitch = 2 if question else 0
                else:
                    pitch = b % 3
                long_ = 1 if cls == "V" and (b >> 2) % 4 == 0 else 0
                parts.append(units[ch][pitch * 2 + long_])
            else:
                variants = units[cls]
                parts.append(variants[digest[(i + 4) & 31] % len(variants)])
        parts.append(units["."][0])
        # an inaudible (±128 of 32767) signature: the recording's fingerprint
        parts.append(array("h", [b - 128 for b in digest]).tobytes())
        return b"".join(parts)

    def say_parts(self, parts: Sequence[str], salt: str | bytes = b"") -> bytes:
        """:meth:`say` of the parts joined (this voice has no use for the split)."""
        return self.say("".join(parts), salt)

    def segment(self, text: str, salt: str | bytes = b"") -> AudioSegment:
        """:meth:`say` as a pydub ``AudioSegment`` (for playing, mixing or exporting)."""
        return AudioSegment(self.say(text, salt), sample_width=WIDTH, frame_rate=RATE,
                            channels=CHANNELS)


VoiceEngine = Literal["speech", "fast"]
"""Which voice renders utterances: eSpeak NG speech, or the letter splice."""

_KIND_TRACT = {"male": 0.96, "female": 1.11, "child": 1.11}
"""The middle of each kind's formant scale: a speaker's formants move by the ratio to it
(children speak with the female variants, their larger scale raises the formants)."""

_FLOOR = array("h", (int(v * 36) for v in _noise(0x0F1E, 12 * RATE))).tobytes()
"""Twelve seconds of the microphone's noise floor, laid under every recording."""


def espeak_voice(profile: VoiceProfile, locale: str, kind: VoiceKind) -> EspeakVoice:
    """The eSpeak NG set-up of a speaker: everything follows from the profile."""
    variants = VARIANTS[kind]
    return EspeakVoice(
        language=LANGUAGES[locale],
        variant=variants[profile.seed % len(variants)],
        pitch=(round(profile.f0 * 0.8), round(profile.f0 * 1.3)),
        formant=round(profile.formant_scale / _KIND_TRACT[kind], 3),
        rate=round(185 * profile.tempo),
        gain=round(profile.loudness * 2.4, 3),
    )


class SpeechVoice:
    """One speaker as eSpeak NG renders them; phrases cached, utterances assembled."""

    def __init__(self, profile: VoiceProfile, locale: str, kind: VoiceKind) -> None:
        self.profile = profile
        self.espeak = espeak_voice(profile, locale, kind)
        self.key = self.espeak.key
        self._salt_key = self.key.encode()

    def render(self, part: str) -> bytes:
        """The cached render of one phrase or word (trimmed, no pauses)."""
        return RENDERS.get(self.espeak, self.key, part)

    def say(self, text: str, salt: str | bytes = b"") -> bytes:
        """PCM of this speaker saying ``text`` in one piece."""
        return self.say_parts((text,), salt)

    def say_parts(self, parts: Sequence[str], salt: str | bytes = b"") -> bytes:
        """PCM of this speaker saying ``parts`` one after the other (16 kHz mono s16le).

        ``salt`` (e.g. the utterance id) sets the pauses, the noise floor's stretch and the
        signature, so the same sentence said twice is two recordings, not one copied.
        """
        if isinstance(salt, str):
            salt = salt.encode()
        text = "\x1f".join(parts)
        digest = hashlib.sha256(self._salt_key + b"\0" + salt + b"\0" + text.encode()).digest()
        get = RENDERS.get
        espeak, key = self.espeak, self.key
        # lead-in 20-60 ms (the wake word is cut off), pauses between parts 15-45 ms,
        # 50 ms after
        pieces = [bytes(2 * (RATE // 50 + (digest[0] | digest[1] << 8) % (RATE // 25)))]
        for i, part in enumerate(parts):
            if i:
                pieces.append(bytes(2 * (RATE * 15 // 1000 + digest[4 + (i & 15)] % 31 * 16)))
            pieces.append(get(espeak, key, part))
        pieces.append(bytes(2 * RATE // 20))
        pcm = b"".join(pieces)
        n = len(pcm)
        floor = _FLOOR if n <= len(_FLOOR) else _FLOOR * (n // len(_FLOOR) + 1)
        off = 2 * ((digest[2] | digest[3] << 8 | digest[20] << 16) % ((len(floor) - n) // 2 + 1))
        pcm = audioop.add(pcm, floor[off:off + n], WIDTH)
        # an inaudible (±128 of 32767) signature: the recording's fingerprint
        return pcm + array("h", [b - 128 for b in digest]).tobytes()

    def segment(self, text: str, salt: str | bytes = b"") -> AudioSegment:
        """:meth:`say` as a pydub ``AudioSegment`` (for playing, mixing or exporting)."""
        return AudioSegment(self.say(text, salt), sample_width=WIDTH, frame_rate=RATE,
                            channels=CHANNELS)


class Voice(Protocol):
    """What a speaker's voice offers, whichever engine renders it."""

    profile: VoiceProfile

    def say(self, text: str, salt: str | bytes = b"") -> bytes: ...

    def say_parts(self, parts: Sequence[str], salt: str | bytes = b"") -> bytes: ...

    def segment(self, text: str, salt: str | bytes = b"") -> AudioSegment: ...


def make_voice(profile: VoiceProfile, locale: str, kind: VoiceKind,
               engine: VoiceEngine = "speech") -> Voice:
    """The speaker's voice on ``engine``."""
    if engine == "fast":
        return _splice_voice(profile)
    return SpeechVoice(profile, locale, kind)


@lru_cache(maxsize=128)
def _splice_voice(profile: VoiceProfile) -> SpliceVoice:
    """One rendering per profile and process (~125 KB of units, ~4 ms to render): a
    shrinking search replays the same speakers scores of times. A voice never changes
    after its rendering, so sharing it is safe."""
    return SpliceVoice(profile)


def duration_ms(pcm: bytes) -> int:
    """Length of ``pcm`` in milliseconds."""
    return _duration_ms(len(pcm))


def pcm_to_wav_bytes(pcm: bytes, rate: int = RATE, width: int = WIDTH,
                     channels: int = CHANNELS) -> bytes:
    """Wrap raw PCM in a RIFF/WAVE header (the same writer the backend serves WAVs with)."""
    return pcm_to_wav(pcm, rate=rate, width=width, channels=channels)


def wav_to_pcm(data: bytes) -> tuple[bytes, int, int, int]:
    """The PCM frames of a WAV file and its (rate, width, channels)."""
    wav = read_wav(data)
    return wav.pcm, wav.rate, wav.width, wav.channels
