"""The auditor judges packages by content against the ledger, and refuses hostile zips."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import random
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from contract.audio import pcm_to_wav
from simulator.cli.audit import audit
from simulator.fleet.ledger import LedgerEntry, Outcome
from simulator.judge.audit import (
    BadPackage,
    HostilePackage,
    Limits,
    UnknownRecipient,
    ZipBomb,
    audit_package,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "packages"


def make_pcm(seed: int, nbytes: int = 3200) -> bytes:
    return random.Random(seed).randbytes(nbytes)


def make_wav(pcm: bytes) -> bytes:
    return pcm_to_wav(pcm)


def entry(household: str, n: int, speaker: str, pcm: bytes, transcript: str,
          recorded_at: str, outcome: Outcome = "ok") -> LedgerEntry:
    return LedgerEntry(
        utterance_id=f"utt-{household}-{n}", recording_id=f"rec_{household}_{n}",
        household=household, account_id=f"acc_{household}",
        device_serial=f"G0{household}", speaker=speaker, recorded_at=recorded_at,
        transcript=transcript, pcm_sha256=hashlib.sha256(pcm).hexdigest(), outcome=outcome)


class Package:
    """Builds an access package in the layout of :mod:`contract.package` (or lies about it)."""

    def __init__(self, account_id: str | None = "acc_alpha",
                 request_id: str = "req_1", profile: dict[str, Any] | None = None) -> None:
        self.account_id, self.request_id = account_id, request_id
        self.profile = profile or {"name": "Alpha"}
        self.files: list[tuple[str, bytes, dict[str, Any]]] = []
        self.rows: list[dict[str, str]] = []
        self.manifest = True

    def add(self, recording_id: str, pcm: bytes, *, claimed_owner: str | None = None,
            claimed_sha: str | None = None, transcript: str | None = None,
            recorded_at: str = "", name: str | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else make_wav(pcm)
        path = name or f"voice/recordings/{recording_id}.wav"
        self.files.append((path, data, {
            "path": path, "sha256": claimed_sha or hashlib.sha256(data).hexdigest(),
            "bytes": len(data), "recording_id": recording_id,
            "account_id": claimed_owner or self.account_id}))
        if transcript is not None:
            self.row(recording_id, transcript, recorded_at, path.removeprefix("voice/"))

    def row(self, recording_id: str, transcript: str, recorded_at: str, file: str) -> None:
        self.rows.append({"recording_id": recording_id, "device": "kitchen",
                          "recorded_at": recorded_at, "duration_ms": "100",
                          "transcript": transcript, "file": file})

    def write(self, path: Path) -> Path:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            if self.manifest:
                zf.writestr("manifest.json", json.dumps({
                    "format": "overheard-access-package/1", "request_id": self.request_id,
                    "account_id": self.account_id, "subject": "Alpha",
                    "generated_at": "2018-08-01T00:00:00Z",
                    "counts": {"recordings": len(self.files)},
                    "files": [meta for _, _, meta in self.files]}))
            zf.writestr("README.txt", "your data")
            zf.writestr("account/profile.json", json.dumps(self.profile))
            out = io.StringIO()
            w = csv.DictWriter(out, ["recording_id", "device", "recorded_at", "duration_ms",
                                     "transcript", "file"])
            w.writeheader()
            w.writerows(self.rows)
            zf.writestr("voice/transcripts.csv", out.getvalue())
            for name, data, _ in self.files:
                zf.writestr(name, data)
        return path


@pytest.fixture
def world() -> dict[str, Any]:
    """Two households: alpha (anna, ben; 3 recordings) and bravo (carla, dirk; 3)."""
    pcms = {k: make_pcm(i) for i, k in enumerate(["a0", "a1", "a2", "b0", "b1", "b2"])}
    ledger = [
        entry("alpha", 0, "anna", pcms["a0"], "wie wird das Wetter", "2018-06-01T08:00:00Z"),
        entry("alpha", 1, "ben", pcms["a1"], "spiel Musik", "2018-06-02T08:00:00Z"),
        entry("alpha", 2, "anna", pcms["a2"], "stell einen Wecker", "2018-06-03T08:00:00Z"),
        entry("bravo", 0, "carla", pcms["b0"], "ruf Mama an", "2018-05-01T09:00:00Z"),
        entry("bravo", 1, "dirk", pcms["b1"], "Wetter in Erfurt", "2018-05-02T09:00:00Z"),
        entry("bravo", 2, "carla", pcms["b2"], "wie wird das Wetter", "2018-05-03T09:00:00Z"),
    ]
    return {"pcm": pcms, "ledger": ledger}


def test_lying_manifest_foreign_and_corrupt_judged_by_content(tmp_path: Path,
                                                              world: dict[str, Any]) -> None:
    pcm = world["pcm"]
    pkg = Package()
    pkg.add("rec_alpha_0", pcm["a0"])
    pkg.add("rec_alpha_1", pcm["a1"], claimed_sha="0" * 64)  # manifest hash is wrong
    pkg.add("rec_alpha_2", pcm["a2"])
    # A stranger's recording, and the manifest swears it is the subject's.
    pkg.add("rec_bravo_1", pcm["b1"], claimed_owner="acc_alpha")
    result = audit_package(pkg.write(tmp_path / "p.zip"), world["ledger"], "alpha")

    d = result.to_dict()
    assert (d["request_id"], d["subject_household"], d["subject_account"]) == (
        "req_1", "alpha", "acc_alpha")
    assert (d["files"], d["own"], d["foreign"], d["missing"], d["corrupt"], d["duplicated"],
            d["unattributable"], d["downloaded"]) == (4, 3, {"bravo": 1}, 0, 1, 0, 0, True)
    assert d["manifest"]["claimed_owners"] == {"acc_alpha": 4}
    assert d["manifest"]["contradicted"] == 1
    [leak] = d["leaks"]
    assert {k: leak[k] for k in ("from_household", "from_account", "to_household", "to_account",
                                 "recordings", "data_subjects", "first_recorded_at",
                                 "last_recorded_at", "link_redeemed")} == {
        "from_household": "bravo", "from_account": "acc_bravo", "to_household": "alpha",
        "to_account": "acc_alpha", "recordings": 1, "data_subjects": 1,
        "first_recorded_at": "2018-05-02T09:00:00Z", "last_recorded_at": "2018-05-02T09:00:00Z",
        "link_redeemed": True}
    assert leak["samples"][0]["transcript"] == "Wetter in Erfurt"
    by_path = {v.path: v for v in result.verdicts}
    assert by_path["voice/recordings/rec_bravo_1.wav"].status == "foreign"
    assert by_path["voice/recordings/rec_bravo_1.wav"].by == "pcm"
    assert by_path["voice/recordings/rec_alpha_1.wav"].corrupt is not None
    assert not result.clean


def test_content_decides_even_when_the_manifest_names_the_stranger(
        tmp_path: Path, world: dict[str, Any]) -> None:
    """A whole package of bravo's recordings, made for alpha: three recordings, two people."""
    pkg = Package(account_id="acc_alpha")
    for i in range(3):
        pkg.add(f"rec_bravo_{i}", world["pcm"][f"b{i}"])
    result = audit_package(pkg.write(tmp_path / "p.zip"), world["ledger"],
                           subject_household="alpha", link_redeemed=False)
    assert (result.own, result.foreign, result.missing) == (0, {"bravo": 3}, 3)
    [leak] = result.leaks
    assert (leak.recordings, leak.data_subjects, leak.link_redeemed) == (3, 2, False)
    assert (leak.first_recorded_at, leak.last_recorded_at) == (
        "2018-05-01T09:00:00Z", "2018-05-03T09:00:00Z")
    assert result.to_dict()["downloaded"] is False


def test_subject_without_recordings_does_not_adopt_anothers_account(
        tmp_path: Path, world: dict[str, Any]) -> None:
    """The 2018 shape: a package made for bravo's account, delivered to a requester who owns
    no device. The requester's account is unknown to the ledger and must not be taken from
    the manifest, which names bravo's."""
    pkg = Package(account_id="acc_bravo")
    for i in range(3):
        pkg.add(f"rec_bravo_{i}", world["pcm"][f"b{i}"], claimed_owner="acc_bravo")
    result = audit_package(pkg.write(tmp_path / "p.zip"), world["ledger"],
                           subject_household="requester")
    assert (result.subject_household, result.subject_account) == ("requester", None)
    assert (result.own, result.foreign) == (0, {"bravo": 3})
    [leak] = result.leaks
    assert (leak.from_account, leak.to_household, leak.to_account) == ("acc_bravo", "requester", None)


def test_another_accounts_profile_is_a_finding(tmp_path: Path, world: dict[str, Any]) -> None:
    """profile.json is personal data like the recordings: alpha's own recordings under
    bravo's profile is a package with bravo's data in it."""
    def judged(profile_account: str, subject_account: str | None = None) -> Any:
        pkg = Package(profile={"account_id": profile_account, "name": "Someone"})
        for i in range(3):
            pkg.add(f"rec_alpha_{i}", world["pcm"][f"a{i}"])
        return audit_package(pkg.write(tmp_path / f"{profile_account}.zip"), world["ledger"],
                             "alpha", subject_account)

    own = judged("acc_alpha")
    assert own.foreign_profile is None and own.clean and own.exit_code == 0
    foreign = judged("acc_bravo")
    assert (foreign.own, foreign.foreign, foreign.missing) == (3, {}, 0)
    assert foreign.foreign_profile == "bravo"
    assert not foreign.clean and foreign.exit_code == 1
    assert foreign.to_dict()["foreign_profile"] == "bravo"
    assert foreign.to_dict()["manifest"]["profile_account"] == "acc_bravo"
    # bravo's profile is bravo's data in alpha's hands: a leak of no recordings.
    [leak] = foreign.leaks
    assert (leak.from_household, leak.to_household, leak.recordings, leak.profile) == (
        "bravo", "alpha", 0, True)
    assert own.leaks == []
    # An account the ledger does not know (it recorded nothing) is still not the recipient's.
    unknown = judged("acc_nobody")
    assert unknown.foreign_profile == "?" and unknown.exit_code == 1
    assert unknown.leaks == []  # no household to name; foreign_profile says it


def test_a_package_of_nothing_but_anothers_profile_is_a_finding(
        tmp_path: Path, world: dict[str, Any]) -> None:
    """The wrongly cached package of an account without recordings: no audio at all, only
    the other customer's profile."""
    pkg = Package(account_id="acc_dora", profile={"account_id": "acc_dora", "name": "Dora"})
    result = audit_package(pkg.write(tmp_path / "p.zip"), world["ledger"],
                           subject_household="emil", subject_account="acc_emil")
    assert (result.files, result.own, result.foreign) == (0, 0, {})
    assert result.foreign_profile == "?"
    assert not result.clean and result.exit_code == 1
    # The same package to its own subject is clean.
    mine = audit_package(tmp_path / "p.zip", world["ledger"], subject_household="dora",
                         subject_account="acc_dora")
    assert mine.foreign_profile is None and mine.clean


def test_clean_complete_package(tmp_path: Path, world: dict[str, Any]) -> None:
    pkg = Package()
    for i in range(3):
        pkg.add(f"rec_alpha_{i}", world["pcm"][f"a{i}"])
    result = audit_package(pkg.write(tmp_path / "p.zip"), world["ledger"], "alpha")
    assert (result.files, result.own, result.foreign, result.missing, result.corrupt) == (
        3, 3, {}, 0, 0)
    assert result.clean and result.leaks == []


def test_duplicates_counted_once(tmp_path: Path, world: dict[str, Any]) -> None:
    pcm = world["pcm"]
    # Two utterances with the very same audio are two recordings, not a duplicate.
    ledger = [*world["ledger"],
              entry("alpha", 3, "ben", pcm["a1"], "spiel Musik", "2018-06-04T08:00:00Z")]
    pkg = Package()
    pkg.add("rec_alpha_0", pcm["a0"])
    pkg.add("rec_alpha_0b", pcm["a0"], name="voice/recordings/copy-of-a0.wav")
    pkg.add("rec_alpha_1", pcm["a1"])
    pkg.add("rec_alpha_3", pcm["a1"])
    pkg.add("rec_bravo_0", pcm["b0"])
    pkg.add("rec_bravo_0x", pcm["b0"], name="voice/recordings/again.wav")
    result = audit_package(pkg.write(tmp_path / "p.zip"), ledger, "alpha")
    assert (result.files, result.own, result.foreign, result.duplicated) == (
        6, 3, {"bravo": 1}, 2)
    assert result.files == (result.own + sum(result.foreign.values()) + result.unattributable
                            + result.duplicated)
    assert result.missing == 1  # rec_alpha_2
    assert result.leaks[0].recordings == 1
    dups = {v.path: v.duplicate_of for v in result.verdicts if v.duplicate_of}
    assert dups == {"voice/recordings/copy-of-a0.wav": "voice/recordings/rec_alpha_0.wav",
                    "voice/recordings/again.wav": "voice/recordings/rec_bravo_0.wav"}


def test_missing_counts_only_stored_recordings_up_to_as_of(tmp_path: Path,
                                                          world: dict[str, Any]) -> None:
    ledger = [*world["ledger"],
              entry("alpha", 9, "ben", make_pcm(99), "failed upload", "2018-06-05T08:00:00Z",
                    outcome="fail")]
    pkg = Package()
    pkg.add("rec_alpha_0", world["pcm"]["a0"])
    path = pkg.write(tmp_path / "p.zip")
    assert audit_package(path, ledger, "alpha").missing == 2
    assert audit_package(path, ledger, "alpha", as_of="2018-06-02T12:00:00Z").missing == 1
    # A package that answers someone else's request is not "missing" the recipient's data.
    assert audit_package(path, ledger, "alpha", made_for="bravo").missing == 0


def test_transcript_fallback_when_audio_is_unknown(tmp_path: Path,
                                                   world: dict[str, Any]) -> None:
    pkg = Package()
    pkg.add("rec_alpha_0", world["pcm"]["a0"], transcript="wie wird das Wetter",
            recorded_at="2018-06-01T08:00:00Z")
    # Re-encoded audio (no PCM match), but the transcript and time say it is dirk's.
    pkg.add("rec_x1", make_pcm(1234), transcript="Wetter in  ERFURT",
            recorded_at="2018-05-02T09:00:00+00:00")
    # The same words were said in both households, and no time narrows it: unattributable.
    pkg.add("rec_x2", make_pcm(1235), transcript="wie wird das Wetter", recorded_at="")
    # Audio nobody recorded, words nobody said.
    pkg.add("rec_x3", make_pcm(1236), transcript="hallo")
    # bravo's transcript row without its audio: still personal data of bravo.
    pkg.row("rec_bravo_0", "ruf Mama an", "2018-05-01T09:00:00Z", "recordings/rec_bravo_0.wav")
    result = audit_package(pkg.write(tmp_path / "p.zip"), world["ledger"], "alpha")

    by_path = {v.path: v for v in result.verdicts}
    x1 = by_path["voice/recordings/rec_x1.wav"]
    assert (x1.status, x1.by, x1.owner_household, x1.utterance_id) == (
        "foreign", "transcript", "bravo", "utt-bravo-1")
    assert by_path["voice/recordings/rec_x2.wav"].status == "unattributable"
    assert by_path["voice/recordings/rec_x3.wav"].status == "unattributable"
    assert (result.own, result.foreign, result.unattributable) == (1, {"bravo": 1}, 2)
    assert result.foreign_transcripts == {"bravo": 1}
    [leak] = result.leaks
    assert (leak.recordings, leak.transcript_only, leak.data_subjects) == (1, 1, 2)


def test_truncated_wav_is_corrupt(tmp_path: Path, world: dict[str, Any]) -> None:
    pkg = Package()
    whole = make_wav(world["pcm"]["a0"])
    pkg.add("rec_alpha_0", b"", raw=whole[:-100])
    result = audit_package(pkg.write(tmp_path / "p.zip"), world["ledger"], "alpha")
    assert result.corrupt == 1
    assert "truncated" in (result.verdicts[0].corrupt or "")


def test_package_without_manifest_needs_a_subject(tmp_path: Path, world: dict[str, Any]) -> None:
    pkg = Package()
    pkg.manifest = False
    pkg.add("rec_bravo_0", world["pcm"]["b0"])
    path = pkg.write(tmp_path / "p.zip")
    with pytest.raises(UnknownRecipient, match="cannot tell who received this package"):
        audit_package(path, world["ledger"])
    result = audit_package(path, world["ledger"], subject_household="alpha")
    assert (result.foreign, result.manifest.readable, result.request_id) == (
        {"bravo": 1}, False, "p")


def test_unknown_compression_method_cannot_be_judged(tmp_path: Path,
                                                     world: dict[str, Any]) -> None:
    pkg = Package()
    pkg.add("rec_alpha_0", world["pcm"]["a0"])
    path = pkg.write(tmp_path / "p.zip")
    data = bytearray(path.read_bytes())
    # Rewrite the method field (99: AES) of every local and central header.
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(sig)
        while at != -1:
            data[at + offset:at + offset + 2] = (99).to_bytes(2, "little")
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(BadPackage, match="method 99"):
        audit_package(path, world["ledger"], "alpha")


def test_not_a_zip(tmp_path: Path, world: dict[str, Any]) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    with pytest.raises(BadPackage, match="bad.zip"):
        audit_package(bad, world["ledger"], "alpha")


# -- hostile packages --------------------------------------------------------------------
def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_zip_slip_refused_and_nothing_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              world: dict[str, Any]) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    with pytest.raises(HostilePackage) as info:
        audit_package(FIXTURES / "zip-slip.zip", world["ledger"], "alpha")
    assert not isinstance(info.value, ZipBomb)
    findings = " | ".join(info.value.findings)
    assert "'../../evil.wav'" in findings and "absolute path" in findings
    assert "backslash" in findings
    assert _tree(tmp_path) == before
    assert not (tmp_path / "evil.wav").exists()
    assert not Path("/tmp/overheard-zip-slip-evil.wav").exists()


def test_zip_bomb_refused_without_inflating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           world: dict[str, Any]) -> None:
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    assert (FIXTURES / "zip-bomb.zip").stat().st_size < 1024 * 1024
    with pytest.raises(ZipBomb, match="zip bomb") as info:
        audit_package(FIXTURES / "zip-bomb.zip", world["ledger"], "alpha")
    assert any("inflates" in f for f in info.value.findings)
    assert opened == []  # not one member was inflated


def test_entry_count_and_member_size_limits(tmp_path: Path, world: dict[str, Any]) -> None:
    pkg = Package()
    for i in range(3):
        pkg.add(f"rec_alpha_{i}", world["pcm"][f"a{i}"])
    path = pkg.write(tmp_path / "p.zip")
    with pytest.raises(ZipBomb, match="entries"):
        audit_package(path, world["ledger"], "alpha", limits=Limits(max_entries=5))
    with pytest.raises(ZipBomb, match="declares"):
        audit_package(path, world["ledger"], "alpha", limits=Limits(max_member_bytes=1000))


def test_hostile_fixtures_are_reproducible(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_hostile", FIXTURES / "make_hostile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("zip-slip.zip", "zip-bomb.zip"):
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name


# -- the command --------------------------------------------------------------------------
def _ledger_file(tmp_path: Path, entries: list[LedgerEntry],
                 downloads: list[tuple[str, Path, str]] = (), name: str = "ledger.jsonl") -> Path:
    """A ledger file; ``downloads`` are (household, zip, made_for) records by the zip's hash."""
    path = tmp_path / name
    lines = [e.to_json() for e in entries]
    for household, zip_path, made_for in downloads:
        lines.append(json.dumps({
            "kind": "download", "at": "2018-08-01T00:00:00Z", "household": household,
            "account_id": f"acc_{household}", "request_id": f"req_{made_for}",
            "made_for": made_for, "sha256": hashlib.sha256(zip_path.read_bytes()).hexdigest(),
            "bytes": zip_path.stat().st_size}))
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _zip_of(tmp_path: Path, world: dict[str, Any], name: str, keys: list[str],
            account_id: str = "acc_alpha") -> Path:
    pkg = Package(account_id=account_id)
    for k in keys:
        rid = f"rec_{'alpha' if k[0] == 'a' else 'bravo'}_{k[1]}"
        pkg.add(rid, world["pcm"][k] if k in world["pcm"] else make_pcm(1000 + len(k)),
                name=f"voice/recordings/{name}-{len(pkg.files)}.wav")
    return pkg.write(tmp_path / f"{name}.zip")


def _run(*args: Any) -> Any:
    return CliRunner().invoke(audit, [str(a) for a in args])


def test_cli_recipient_comes_from_the_ledger_by_zip_hash_never_the_manifest(
        tmp_path: Path, world: dict[str, Any]) -> None:
    # bravo's data in a package whose manifest names alpha's account: misdelivered to alpha.
    misdelivered = _zip_of(tmp_path, world, "misdelivered", ["b0", "b1", "b2"],
                           account_id="acc_bravo")
    clean = _zip_of(tmp_path, world, "clean", ["a0", "a1", "a2"])
    ledger = _ledger_file(tmp_path, world["ledger"],
                          [("alpha", misdelivered, "alpha"), ("alpha", clean, "alpha")])

    found = _run(misdelivered, "--ledger", ledger, "--json")
    assert found.exit_code == 1, found.output
    d = json.loads(found.stdout)
    assert (d["subject_household"], d["own"], d["foreign"], d["missing"]) == (
        "alpha", 0, {"bravo": 3}, 3)
    assert d["leaks"][0]["from_household"] == "bravo"

    ok = _run(clean, "--ledger", ledger)
    assert ok.exit_code == 0, ok.output
    assert "own 3" in ok.output and "leaks     none" in ok.output

    # Without a download record and without --subject nobody can say who received it.
    bare = _ledger_file(tmp_path, world["ledger"], name="bare.jsonl")
    unknown = _run(misdelivered, "--ledger", bare)
    assert unknown.exit_code == 2, unknown.output
    assert "cannot tell who received this package" in unknown.output
    # --subject names the recipient when the ledger does not.
    given = _run(misdelivered, "--ledger", bare, "--subject", "alpha")
    assert given.exit_code == 1 and "bravo (acc_bravo)" in given.output


def test_cli_findings_exit_1(tmp_path: Path, world: dict[str, Any]) -> None:
    missing = _zip_of(tmp_path, world, "missing", ["a0", "a1"])
    duplicated = _zip_of(tmp_path, world, "duplicated", ["a0", "a1", "a2", "a2"])
    unattributable = _zip_of(tmp_path, world, "unattributable", ["a0", "a1", "a2", "zz"])
    corrupt = Package()
    for i in range(3):
        corrupt.add(f"rec_alpha_{i}", world["pcm"][f"a{i}"],
                    claimed_sha="0" * 64 if i == 0 else None)
    corrupt_zip = corrupt.write(tmp_path / "corrupt.zip")
    zips = {"missing": missing, "duplicated": duplicated, "unattributable": unattributable,
            "corrupt": corrupt_zip}
    ledger = _ledger_file(tmp_path, world["ledger"],
                          [("alpha", z, "alpha") for z in zips.values()])
    for what, z in zips.items():
        res = _run(z, "--ledger", ledger, "--json")
        assert res.exit_code == 1, (what, res.output)
        assert json.loads(res.stdout)[what] == 1, what


def test_cli_cannot_decide_exits_2(tmp_path: Path, world: dict[str, Any]) -> None:
    clean = _zip_of(tmp_path, world, "clean", ["a0", "a1", "a2"])
    # The wrong ledger: a world whose audio is none of the package's.
    other = [entry("delta", i, "dora", make_pcm(500 + i), f"x {i}", "2018-06-01T08:00:00Z")
             for i in range(3)]
    wrong = _ledger_file(tmp_path, other, [("delta", clean, "delta")], name="wrong.jsonl")
    res = _run(clean, "--ledger", wrong)
    assert res.exit_code == 2, res.output
    assert "match nothing" in res.output
    ledger = _ledger_file(tmp_path, world["ledger"])
    nobody = _run(clean, "--ledger", ledger, "--subject", "zulu")
    assert nobody.exit_code == 2 and "names no household or account" in nobody.output


def test_cli_unreadable_input_exits_2(tmp_path: Path, world: dict[str, Any]) -> None:
    ledger = _ledger_file(tmp_path, world["ledger"])
    clean_zip = _zip_of(tmp_path, world, "clean", ["a0", "a1", "a2"])
    broken = tmp_path / "broken.jsonl"
    broken.write_text(world["ledger"][0].to_json() + "\n{not json\n")
    for args, needle in (
        ([FIXTURES / "zip-slip.zip", "--ledger", ledger, "--subject", "alpha"], "zip-slip.zip"),
        ([FIXTURES / "zip-bomb.zip", "--ledger", ledger, "--subject", "alpha"], "zip bomb"),
        ([ledger, "--ledger", ledger, "--subject", "alpha"], "not a readable zip"),
        ([clean_zip, "--ledger", tmp_path / "nope.jsonl"], "nope.jsonl"),
        ([clean_zip, "--ledger", broken], "broken.jsonl:2"),
    ):
        res = _run(*args)
        assert res.exit_code == 2, (args, res.output)
        assert needle in res.output
    missing_option = _run(clean_zip)
    assert missing_option.exit_code == 2 and "--ledger" in missing_option.output


def test_cli_help_documents_exit_codes_and_recipient() -> None:
    out = _run("--help").output
    assert "Exit 2: cannot decide" in out and "sha256" in out and "never the manifest" in out
