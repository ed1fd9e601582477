"""The contract against a second way of doing the same thing: the frame builders against
the models, the WAV writer against :mod:`wave`, the manifest model against its layout."""

from __future__ import annotations

import io
import json
import uuid
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.ingest.protocol import parse_frame
from contract import audio, package, stream

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=80)


@settings(max_examples=60, deadline=None)
@given(uid=st.uuids(), transcript=_TEXT, locale=st.sampled_from(["de-DE", "en", "fr_FR"]),
       ms=st.integers(0, 999), second=st.integers(0, 59))
def test_the_builders_write_what_the_models_write_and_the_parser_reads_it_back(
        uid: uuid.UUID, transcript: str, locale: str, ms: int, second: int) -> None:
    at = f"2024-05-01T08:30:{second:02d}.{ms:03d}Z"
    start = stream.start_json(str(uid), at)
    assert start == stream.UtteranceStart(type="utterance.start", utterance_id=str(uid),
                                          recorded_at=at, audio=stream.FORMAT).to_json()
    assert parse_frame(start) == stream.UtteranceStart.model_validate_json(start)
    end = stream.end_json(str(uid), transcript, locale)
    parsed = parse_frame(end)
    assert isinstance(parsed, stream.UtteranceEnd)
    assert (parsed.utterance_id, parsed.locale) == (str(uid), locale)
    assert json.loads(end)["transcript"] == transcript


def test_the_server_frames_are_the_models() -> None:
    uid = str(uuid.UUID(int=7))
    assert json.loads(stream.stored_json(uid, "rec_1", True)) == stream.UtteranceStored(
        utterance_id=uid, recording_id="rec_1", duplicate=True).model_dump()
    err = json.loads(stream.error_json(stream.ErrorCode.STORAGE_FAILED, "later", uid))
    assert err == {"type": "error", "code": "storage_failed", "message": "later",
                   "utterance_id": uid}
    assert stream.RETRYABLE == {"storage_failed"}


@pytest.mark.parametrize("frames", [0, 1, 160, audio.RATE])
def test_the_wav_writer_matches_the_wave_module(frames: int) -> None:
    pcm = bytes(range(256)) * (frames * audio.FRAME_BYTES // 256) + bytes(
        frames * audio.FRAME_BYTES % 256)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(audio.CHANNELS)
        w.setsampwidth(audio.WIDTH)
        w.setframerate(audio.RATE)
        w.writeframes(pcm)
    assert audio.pcm_to_wav(pcm) == buf.getvalue()
    read = audio.read_wav(buf.getvalue())
    assert (read.pcm, read.rate, read.width, read.channels) == (
        pcm, audio.RATE, audio.WIDTH, audio.CHANNELS)
    assert audio.duration_ms(len(pcm)) == frames * 1000 // audio.RATE


def test_a_truncated_wav_declares_more_than_it_holds_and_garbage_is_a_wav_error() -> None:
    whole = audio.pcm_to_wav(bytes(3200))
    cut = audio.read_wav(whole[:-1000])
    assert (len(cut.pcm), cut.declared_bytes) == (2200, 3200)
    with pytest.raises(ValueError, match="RIFF"):
        audio.read_wav(b"ID3\x04" + bytes(40))


def test_the_manifest_lists_its_fields_in_the_layout_order() -> None:
    manifest = package.Manifest(
        request_id="prq_1", account_id="acc_1",
        subject=package.ManifestSubject(account_id="acc_1", name=None, email="a@b.de"),
        generated_at="2024-05-01T08:30:00.000Z",
        counts=package.ManifestCounts(recordings=1, devices=0, files=1, bytes=10),
        files=[package.ManifestFile(path=package.recording_entry_name("rec_1", 0), sha256="0",
                                    bytes=10, recording_id="rec_1", account_id="acc_1")])
    dumped = manifest.model_dump(mode="json")
    assert list(dumped) == ["format", "request_id", "account_id", "subject", "generated_at",
                            "counts", "files"]
    assert dumped["format"] == package.FORMAT == "overheard-access-package/1"
    assert dumped["files"][0]["path"] == "voice/recordings/rec_1.wav"
    assert package.recording_entry_name("../evil", 3) == "voice/recordings/recording-000003.wav"
