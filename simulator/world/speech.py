"""Intelligible speech: eSpeak NG driven through ctypes, rendered once and cached.

The library and its voice data come from the ``espeakng-loader`` wheel (eSpeak NG is
GPL-3.0 and installed as its own package; nothing of it is copied into this project). One
process holds one eSpeak NG instance (the library keeps global state), initialised for
synchronous output with a synth callback that collects the 22,050 Hz samples.

A speaker's :class:`EspeakVoice` is a full voice file written to the cache directory: the
locale's language file, one of the bundled voice variants, the speaker's pitch range and
formant frequencies scaled by the speaker's vocal tract size. The speaking rate is a
parameter. Each render is resampled to 16 kHz mono s16le (``audioop.ratecv`` after a
3-tap low-pass, so nothing above 8 kHz folds back), trimmed of silence at both ends and
scaled to the speaker's loudness.

Determinism: eSpeak NG carries state from one synthesis to the next (pitch flutter and
amplitude roughness advance through static counters), so a phrase would sound slightly
different depending on what was said before it; a variant's echo and breath noise are
filtered through buffers that are not reset between renders either. Voice files switch all
of these off (``flutter 0``, ``roughness 8``, no ``echo``, no ``breath``), the noise
generator is re-seeded before every render, and the volume stays low enough that the
library's gain control never engages. A render is then a
function of the voice file, the rate and the text alone, which is what makes a disk cache
sound: the cached bytes equal a fresh render in any order, in any process.

Caching (:class:`RenderCache`): in memory (bounded, least recently used voice first out)
and on disk under the user's cache directory (``platformdirs``), one file per voice and
text, written atomically so concurrent runs share it. ``OVERHEARD_CACHE_DIR`` moves it
(tests point it at a temporary directory).
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import shutil
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

with warnings.catch_warnings():
    # deprecated in 3.11, provided by audioop-lts from 3.13; the C speed is the point
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

import espeakng_loader
import platformdirs

from contract.audio import RATE


class SpeechError(RuntimeError):
    """eSpeak NG could not be loaded or could not render (missing data, refused voice)."""


CACHE_ENV = "OVERHEARD_CACHE_DIR"
"""Environment variable that moves the render cache (default: the user's cache dir)."""

RENDER_VERSION = 2
"""Part of every cache key: bump it when a render of the same voice and text changes."""

OUT_RATE = RATE
ESPEAK_RATE = 22050
_VOLUME = 60
"""eSpeak NG's volume (0-200): low enough that its gain control never engages."""
_SILENCE = 180
"""Samples below this (of 32767) at either end of a render are trimmed."""

# espeak_AUDIO_OUTPUT, espeak_PARAMETER, espeak_POSITION_TYPE and flag values (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_POS_CHARACTER = 1
_CHARS_UTF8 = 1

LANGUAGES: dict[str, str] = {
    "de_DE": "gmw/de",
    "fr_FR": "roa/fr",
    "en_US": "gmw/en-US",
    "en_GB": "gmw/en",
}
"""Locale → eSpeak NG language file (under ``espeak-ng-data/lang``)."""

VARIANTS: dict[str, tuple[str, ...]] = {
    "male": ("m1", "m2", "m3", "m4", "m6", "m7"),
    "female": ("f1", "f2", "f3", "f4"),
    "child": ("f1", "f2", "f4"),
}
"""Bundled voice variants (``voices/!v``) per kind of speaker; the Klatt ones are left out
(another synthesiser, with its own carried-over state)."""

_STRIP = ("language", "name", "pitch", "formant", "flutter", "roughness", "echo", "breath")
"""Variant keywords the speaker's own values replace, or that carry state from one render
into the next (the echo buffer and the breath resonators are not reset between them)."""


def cache_dir() -> Path:
    """Where renders are kept: ``$OVERHEARD_CACHE_DIR`` or the user's cache directory."""
    given = os.environ.get(CACHE_ENV)
    return Path(given) if given else Path(platformdirs.user_cache_dir("overheard"))


@dataclass(frozen=True)
class EspeakVoice:
    """How eSpeak NG is set up for one speaker."""

    language: str
    """Language file, e.g. ``gmw/de``."""
    variant: str
    """Voice variant, e.g. ``m3``."""
    pitch: tuple[int, int]
    """Lowest and highest pitch of the intonation, Hz."""
    formant: float
    """Multiplier on the variant's formant frequencies (vocal tract size)."""
    rate: int
    """Words per minute."""
    gain: float
    """Multiplier applied to the 16 kHz render (the speaker's loudness)."""

    def voice_file(self) -> str:
        """The full voice file: language, variant, and this speaker's values."""
        data = Path(espeakng_loader.get_data_path())
        lang = _read(data / "lang" / self.language)
        variant = _read(data / "voices" / "!v" / self.variant)
        formants = _formants(variant)
        lines = [ln for ln in lang if not ln.startswith("name")]
        lines += [ln for ln in variant if not ln.startswith(_STRIP)]
        lines += [f"name overheard-{self.variant}", f"pitch {self.pitch[0]} {self.pitch[1]}",
                  "flutter 0", "roughness 8"]
        for n, (freq, height, width) in enumerate(formants):
            lines.append(f"formant {n} {round(freq * self.formant)} {height} {width}")
        return "\n".join(lines) + "\n"

    @property
    def key(self) -> str:
        """Identifies every render of this voice (file, rate, gain, render version)."""
        text = f"{RENDER_VERSION}\n{self.rate}\n{self.gain:.4f}\n{self.voice_file()}"
        return hashlib.sha256(text.encode()).hexdigest()


def _read(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpeechError(f"eSpeak NG data is missing {path}: {exc}") from exc
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("//")]


def _formants(variant: list[str]) -> list[tuple[int, int, int]]:
    """The variant's nine formants (percent of the language's), 100 where it sets none."""
    out = [(100, 100, 100)] * 9
    for ln in variant:
        parts = ln.split()
        if parts[0] == "formant" and len(parts) >= 5:
            n = int(parts[1])
            if 0 <= n < 9:
                out[n] = (int(parts[2]), int(parts[3]), int(parts[4]))
    return out


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class _Engine:
    """The process's one eSpeak NG instance."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as exc:
            raise SpeechError(f"cannot load eSpeak NG from espeakng-loader: {exc}") from exc
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 500,
                                     espeakng_loader.get_data_path().encode(), 0)
        if rate != ESPEAK_RATE:
            raise SpeechError(f"eSpeak NG initialised at {rate} Hz, expected {ESPEAK_RATE}")
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetVoiceByFile.argtypes = [ctypes.c_char_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._lib = lib
        self._chunks: list[bytes] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced while the lib holds it
        lib.espeak_SetSynthCallback(self._callback)
        self._voice_path = ""
        self._lock = threading.Lock()

    def _collect(self, wav: ctypes.Array[ctypes.c_short] | None, n: int,
                 _events: int | None) -> int:
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        return 0

    def synthesise(self, voice_path: str, rate: int, text: str) -> bytes:
        """22,050 Hz mono s16le PCM of ``text`` in the voice file at ``voice_path``."""
        lib = self._lib
        with self._lock:
            if voice_path != self._voice_path:
                if lib.espeak_SetVoiceByFile(voice_path.encode()) != 0:
                    raise SpeechError(f"eSpeak NG refused the voice file {voice_path}")
                self._voice_path = voice_path
            lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
            lib.espeak_SetParameter(_PARAM_VOLUME, _VOLUME, 0)
            lib.espeak_SetParameter(_PARAM_PITCH, 50, 0)
            lib.espeak_SetParameter(_PARAM_RANGE, 50, 0)
            lib.espeak_ng_SetRandSeed(1)
            self._chunks.clear()
            data = text.encode()
            status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                      None, None)
            if status != 0:
                raise SpeechError(f"eSpeak NG failed ({status}) on {text!r}")
            return b"".join(self._chunks)


@cache
def _engine() -> _Engine:
    return _Engine()


def to_16k(pcm: bytes, gain: float) -> bytes:
    """22,050 Hz → 16 kHz: a [¼ ½ ¼] low-pass (zero at 11 kHz), ``ratecv``, then ``gain``."""
    if not pcm:
        return b""
    quarter = audioop.mul(pcm, 2, 0.25)
    lowpassed = audioop.add(audioop.add(quarter[:-4], audioop.mul(pcm[2:], 2, 0.5)[:-2], 2),
                            quarter[4:], 2) if len(pcm) > 4 else pcm
    out, _ = audioop.ratecv(lowpassed, 2, 1, ESPEAK_RATE, OUT_RATE, None)
    return audioop.mul(out, 2, gain)


def trim(pcm: bytes, threshold: int = _SILENCE) -> bytes:
    """``pcm`` without the near-silence at its ends (10 ms resolution, one window kept)."""
    win = 2 * OUT_RATE // 100
    n = len(pcm) // win
    start = 0
    while start < n and audioop.max(pcm[start * win:(start + 1) * win], 2) < threshold:
        start += 1
    end = n
    while end > start and audioop.max(pcm[(end - 1) * win:end * win], 2) < threshold:
        end -= 1
    if start >= end:
        return b""
    return pcm[max(0, start - 1) * win:min(n, end + 1) * win]


class RenderCache:
    """Renders by voice and text: in memory (least recently used voice out), then on disk."""

    def __init__(self, root: Path | None = None, memory_bytes: int = 384 << 20) -> None:
        self._root = root
        self._memory_bytes = memory_bytes
        self._held = 0
        self._voices: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._paths: dict[str, str] = {}
        self.rendered = 0
        """Renders made by eSpeak NG (neither memory nor disk had them)."""
        self.loaded = 0
        """Renders read from disk."""

    @property
    def root(self) -> Path:
        return self._root if self._root is not None else cache_dir()

    @contextmanager
    def rooted(self, root: Path) -> Iterator[None]:
        """Use ``root`` as the disk cache, starting with nothing in memory (benches)."""
        saved = self._root
        self._root = root
        self.clear_memory()
        try:
            yield
        finally:
            self._root = saved
            self.clear_memory()

    def clear_memory(self) -> None:
        """Forget what is held in memory (the disk copy stays)."""
        self._voices.clear()
        self._held = 0

    def get(self, voice: EspeakVoice, voice_key: str, text: str) -> bytes:
        """16 kHz PCM of ``voice`` saying ``text``, trimmed and at the speaker's loudness."""
        held = self._voices.get(voice_key)
        if held is None:
            held = self._voices[voice_key] = {}
        else:
            self._voices.move_to_end(voice_key)
        pcm = held.get(text)
        if pcm is not None:
            return pcm
        pcm = self._from_disk(voice, voice_key, text)
        held[text] = pcm
        self._held += len(pcm)
        while self._held > self._memory_bytes and len(self._voices) > 1:
            _, dropped = self._voices.popitem(last=False)
            self._held -= sum(map(len, dropped.values()))
        return pcm

    def _from_disk(self, voice: EspeakVoice, voice_key: str, text: str) -> bytes:
        base = self.root / "speech" / voice_key[:2] / voice_key
        path = base / (hashlib.sha256(text.encode()).hexdigest()[:32] + ".pcm")
        try:
            pcm = path.read_bytes()
            self.loaded += 1
            return pcm
        except OSError:
            pass
        raw = _engine().synthesise(self._voice_path(voice, voice_key), voice.rate, text)
        pcm = trim(to_16k(raw, voice.gain))
        self.rendered += 1
        _write_atomically(path, pcm)
        return pcm

    def _voice_path(self, voice: EspeakVoice, voice_key: str) -> str:
        path = self._paths.get(voice_key)
        if path is None or not Path(path).exists():
            path = str(_voice_dir() / voice_key[:16])
            _write_atomically(Path(path), voice.voice_file().encode())
            self._paths[voice_key] = path
        return path


_MAX_VOICE_PATH = 55
"""eSpeak NG copies a voice file's path into a fixed buffer: longer paths are refused."""


@cache
def _voice_dir() -> Path:
    """A short-named directory for this process's voice files, removed at exit."""
    for parent in (None, "/tmp"):
        path = Path(tempfile.mkdtemp(prefix="ohv", dir=parent))
        atexit.register(shutil.rmtree, path, True)
        if len(str(path)) + 17 <= _MAX_VOICE_PATH:
            return path
    raise SpeechError(f"no temporary directory with a path short enough for eSpeak NG "
                      f"(at most {_MAX_VOICE_PATH - 17} characters; set TMPDIR)")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name and rename it, so readers never see half."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise SpeechError(f"cannot write the render cache at {path}: {exc}") from exc


RENDERS = RenderCache()
"""The process's render cache."""
