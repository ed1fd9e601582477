"""The ledger: stable keys and order, atomic write, strict read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.fleet.ledger import FIELDS, Ledger, LedgerEntry, LedgerError, pcm_sha256, read_ledger
from simulator.world.households import HouseholdSpec, World


def _entry(uid: str, at: str, outcome: str = "info", rec: str | None = None) -> LedgerEntry:
    return LedgerEntry(utterance_id=uid, recording_id=rec, household="h001", account_id="acc_1",
                       device_serial="G090LF0000000001", speaker="h001.m1", recorded_at=at,
                       transcript="Wie spät ist es?", pcm_sha256=pcm_sha256(uid.encode()),
                       outcome=outcome)  # type: ignore[arg-type]


def test_write_sorts_by_time_then_id_and_keeps_key_order(tmp_path: Path) -> None:
    entries = [_entry("c", "2018-01-02T00:00:00.000Z"), _entry("b", "2018-01-01T00:00:00.000Z"),
               _entry("a", "2018-01-02T00:00:00.000Z")]
    one, two = Ledger(entries), Ledger(reversed(entries))
    p1, p2 = one.write(tmp_path / "1.jsonl"), two.write(tmp_path / "2.jsonl")
    assert p1.read_bytes() == p2.read_bytes()
    lines = p1.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["utterance_id"] for x in lines] == ["b", "a", "c"]
    assert all(list(json.loads(x)) == list(FIELDS) for x in lines)
    assert "Wie spät" in lines[0]  # UTF-8, not \\u escapes
    assert not (tmp_path / "1.jsonl.tmp").exists()


def test_outcome_updates_and_counts(tmp_path: Path) -> None:
    led = Ledger([_entry("a", "2018-01-01T00:00:00.000Z"), _entry("b", "2018-01-01T00:00:01.000Z")])
    # the last word on an utterance wins
    led.record(_entry("a", "2018-01-01T00:00:00.000Z").model_copy(
        update={"outcome": "ok", "recording_id": "rec_1"}))
    led.record(_entry("b", "2018-01-01T00:00:01.000Z").model_copy(update={"outcome": "fail"}))
    assert led.counts() == {"ok": 1, "fail": 1, "info": 0}
    back = read_ledger(led.write(tmp_path / "l.jsonl"))
    assert [(e.utterance_id, e.outcome, e.recording_id) for e in back] == \
        [("a", "ok", "rec_1"), ("b", "fail", None)]
    assert back == led.entries()


def test_read_names_file_line_and_field(tmp_path: Path) -> None:
    good = _entry("a", "2018-01-01T00:00:00.000Z").to_json()
    bad = json.loads(good)
    bad["outcome"] = "maybe"
    p = tmp_path / "bad.jsonl"
    p.write_text(good + "\n\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(LedgerError, match=r"bad.jsonl:3: outcome"):
        read_ledger(p)
    extra = json.loads(good) | {"owner": "x"}
    p.write_text(json.dumps(extra) + "\n", encoding="utf-8")
    with pytest.raises(LedgerError, match=r":1: owner"):
        read_ledger(p)
    p.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(LedgerError, match=":1:"):
        read_ledger(p)
    with pytest.raises(LedgerError, match="cannot open"):
        read_ledger(tmp_path / "missing.jsonl")


def test_ledger_of_a_world_is_reproducible(tmp_path: Path) -> None:
    def ledger(seed: int) -> bytes:
        w = World.build(seed, "en_US", households=[HouseholdSpec("x", recordings=50)])
        led = Ledger()
        for u in w.traffic(2):
            led.record(LedgerEntry(
                utterance_id=u.utterance_id, recording_id=None, household=u.household,
                account_id=None, device_serial=u.device_serial, speaker=u.speaker.speaker_id,
                recorded_at=u.recorded_at_iso, transcript=u.transcript,
                pcm_sha256=pcm_sha256(u.pcm()), outcome="info"))
        return led.write(tmp_path / f"{seed}.jsonl").read_bytes()

    assert ledger(1) == ledger(1)
    assert ledger(1) != ledger(2)
