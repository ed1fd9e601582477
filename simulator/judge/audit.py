"""The independent auditor: judge an access package by its content, against the ledger.

The auditor reads two things only: a package (a zip, from this backend or from anywhere)
and the ledger the simulator kept of what devices really recorded and whose it was. It
never reads the backend's tables and never trusts the package's own ``manifest.json``:
every WAV is attributed to its true owner by the sha256 of its PCM frames, and, when the
audio matches nothing, by its transcript (``voice/transcripts.csv``, narrowed by the
recording time). The manifest's claims are then compared with that verdict and reported
(a manifest that says "all the subject's" over a stranger's recordings is a lie, not an
alibi). Nor does the manifest say who *received* the package: that is the ledger's
download record with the zip's sha256, or the ``--subject`` the caller gives.

Exit codes of ``overheard audit``: 0 only when every file is the recipient's own, intact,
and nothing is missing, duplicated or unattributable; 1 when any of those findings (or a
foreign file) is made; 2 when it cannot decide: the recipient is unknown, most files match
nothing in the ledger (probably the wrong ledger), ``--subject`` names nobody in the
ledger, or the input cannot be read.

Nothing is written to disk: members are streamed from the zip into memory with size caps,
so a hostile entry name cannot land anywhere. Before a single byte is inflated, the
central directory is checked: names that would escape a folder are refused as hostile,
and declared sizes, the inflation ratio and the entry count are checked against
:class:`Limits` so a zip bomb is refused without being inflated.

Errors (each names the file; the CLI maps all of them to exit 2)::

    AuditError            the input cannot be judged
    ├── BadPackage        not a readable zip, an encrypted member
    ├── UnknownRecipient  neither the ledger nor the caller says who received the package
    ├── BadLedger         the ledger cannot be read, or knows nothing of the subject
    └── HostilePackage    entry names with ``..``, absolute paths, backslashes, symlinks
        └── ZipBomb       declared or actual sizes, ratio or entry count beyond the limits
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import stat
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.audio import read_wav
from contract.package import MANIFEST, PROFILE, TRANSCRIPTS
from simulator.fleet.ledger import DownloadRecord, LedgerEntry, read_records
from simulator.judge.identify import Identifiability

SAMPLES_PER_LEAK = 5
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


class AuditError(Exception):
    """The input cannot be judged."""


class BadPackage(AuditError):
    """The package is not a zip the auditor can read, or names no subject."""


class BadLedger(AuditError):
    """The ledger cannot be read, or is not the ledger of this package."""


class UnknownRecipient(AuditError):
    """Nobody says who received the package (the manifest is never taken for it)."""


class HostilePackage(AuditError):
    """Entry names that would write outside a folder if extracted; nothing was extracted."""

    def __init__(self, message: str, findings: list[str]) -> None:
        super().__init__(message)
        self.findings = findings


class ZipBomb(HostilePackage):
    """Sizes beyond the limits; refused before (or while, if headers lie) inflating."""


@dataclass(frozen=True)
class Limits:
    """What a package may claim before the auditor refuses to inflate it."""

    max_entries: int = 200_000
    """Members in the central directory (a 2018-sized package has ~1,750)."""
    max_member_bytes: int = 256 * 1024 * 1024
    """Uncompressed bytes of one member (a 60 s WAV is ~1.9 MB)."""
    max_total_bytes: int = 4 * 1024 * 1024 * 1024
    """Uncompressed bytes of all members together."""
    max_ratio: float = 100.0
    """Declared uncompressed total / size of the zip file on disk."""
    ratio_floor_bytes: int = 16 * 1024 * 1024
    """Below this uncompressed total the ratio is not judged: small text compresses well."""


DEFAULT_LIMITS = Limits()


# -- the ledger --------------------------------------------------------------------------
@dataclass(frozen=True)
class Truth:
    """One ledger line as the auditor needs it (the ledger is the only ground truth)."""

    utterance_id: str
    recording_id: str | None
    household: str
    account_id: str | None
    speaker: str | None
    recorded_at: str | None
    transcript: str
    pcm_sha256: str | None
    outcome: str


def _truth(entry: LedgerEntry, index: int) -> Truth:
    return Truth(
        utterance_id=entry.utterance_id or f"#line{index + 1}",
        recording_id=entry.recording_id,
        household=entry.household or entry.account_id or "?",
        account_id=entry.account_id,
        speaker=entry.speaker,
        recorded_at=entry.recorded_at,
        transcript=entry.transcript,
        pcm_sha256=entry.pcm_sha256 or None,
        outcome=entry.outcome,
    )


def _truths(entries: Iterable[LedgerEntry]) -> list[Truth]:
    """One Truth per utterance: a retried utterance appears once, its ``ok`` line winning."""
    by_id: dict[str, Truth] = {}
    for i, entry in enumerate(entries):
        t = _truth(entry, i)
        old = by_id.get(t.utterance_id)
        if old is None or old.outcome != "ok":
            by_id[t.utterance_id] = t
    return list(by_id.values())


def load_ledger(path: Path) -> list[LedgerEntry]:
    """Ledger entries from a JSON Lines file (``simulator.fleet.ledger`` validates each line)."""
    return load_records(path)[0]


def load_records(path: Path) -> tuple[list[LedgerEntry], list[DownloadRecord]]:
    """The utterances and the downloads of a ledger file."""
    if not path.is_file():
        raise BadLedger(f"{path}: ledger not found")
    try:
        return read_records(path)
    except (OSError, ValueError) as exc:
        message = str(exc)
        raise BadLedger(message if str(path) in message else f"{path}: {message}") from exc


# -- verdicts ----------------------------------------------------------------------------
@dataclass
class FileVerdict:
    """What one audio file in the package really is."""

    path: str
    bytes: int
    sha256: str
    pcm_sha256: str | None = None
    claimed_owner: str | None = None
    """Owner account_id as the manifest states it (untrusted)."""
    owner_household: str | None = None
    owner_account: str | None = None
    utterance_id: str | None = None
    by: str | None = None
    """How it was attributed: ``pcm`` or ``transcript`` (None: unattributable)."""
    status: str = "unattributable"
    """``own``, ``foreign`` or ``unattributable``."""
    duplicate_of: str | None = None
    corrupt: str | None = None
    """Why the file disagrees with the manifest or cannot be read (None: it is sound)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "bytes": self.bytes, "sha256": self.sha256,
            "pcm_sha256": self.pcm_sha256, "status": self.status, "by": self.by,
            "owner_household": self.owner_household, "owner_account": self.owner_account,
            "utterance_id": self.utterance_id, "claimed_owner": self.claimed_owner,
            "duplicate_of": self.duplicate_of, "corrupt": self.corrupt,
        }


@dataclass
class Sample:
    """One leaked recording shown in the report: when, who, what, and where it is."""

    recorded_at: str | None
    speaker: str | None
    transcript: str
    path: str
    """The member of the package zip."""
    audio: str | None = None
    """The copy the run extracted for report.html to play (run folder relative), if any."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recorded_at": self.recorded_at, "speaker": self.speaker,
                               "transcript": self.transcript, "path": self.path}
        if self.audio is not None:
            out["audio"] = self.audio
        return out


@dataclass
class Leak:
    """Recordings of one household that reached another household's package."""

    request_id: str
    from_household: str
    from_account: str | None
    to_household: str | None
    to_account: str | None
    recordings: int
    data_subjects: int
    first_recorded_at: str | None
    last_recorded_at: str | None
    link_redeemed: bool
    transcript_only: int = 0
    """Foreign transcript rows whose audio is not in the package (still personal data)."""
    samples: list[Sample] = field(default_factory=list)
    """A handful of leaked recordings, earliest first."""
    identifiability: Identifiability | None = None
    """What the leaked transcripts reveal of the household (a run sets it; the world is
    not known to a bare audit)."""
    profile: bool = False
    """The package holds this household's account profile (``account/profile.json``: the
    holder's name, email and postal address), with or without recordings."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "from_household": self.from_household, "from_account": self.from_account,
            "to_household": self.to_household, "to_account": self.to_account,
            "recordings": self.recordings, "data_subjects": self.data_subjects,
            "first_recorded_at": self.first_recorded_at,
            "last_recorded_at": self.last_recorded_at,
            "link_redeemed": self.link_redeemed,
            "transcript_only": self.transcript_only,
            "profile": self.profile,
            "samples": [sample.to_dict() for sample in self.samples],
        }
        if self.identifiability is not None:
            out["identifiability"] = self.identifiability.to_dict()
        return out


@dataclass
class ManifestClaims:
    """What the package says about itself, and where its content contradicts it."""

    readable: bool = False
    format: str | None = None
    account_id: str | None = None
    listed: int = 0
    claimed_owners: dict[str, int] = field(default_factory=dict)
    contradicted: int = 0
    """Audio files whose claimed owner is not the owner the content proves."""
    listed_not_present: int = 0
    """Paths the manifest lists that the zip does not hold."""
    present_not_listed: int = 0
    """Audio files in the zip that the manifest does not list."""
    profile_account: str | None = None
    """``account_id`` of the package's ``account/profile.json``: whose account data it holds."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "readable": self.readable, "format": self.format, "account_id": self.account_id,
            "listed": self.listed, "claimed_owners": dict(sorted(self.claimed_owners.items())),
            "contradicted": self.contradicted, "listed_not_present": self.listed_not_present,
            "present_not_listed": self.present_not_listed,
            "profile_account": self.profile_account,
        }


@dataclass
class PackageAudit:
    """One package judged by content.

    Counts: ``files`` audio files; ``own``/``foreign`` distinct recordings;
    ``duplicated`` extra copies; ``unattributable`` distinct files matching no ledger line;
    so ``files == own + sum(foreign) + unattributable + duplicated``. ``missing``: the
    subject's stored recordings (ledger ``ok``) absent from the package. ``corrupt``:
    members whose bytes disagree with the manifest or cannot be read.
    """

    request_id: str
    subject_household: str | None
    subject_account: str | None
    files: int
    own: int
    foreign: dict[str, int]
    missing: int
    corrupt: int
    duplicated: int
    unattributable: int
    downloaded: bool
    foreign_transcripts: dict[str, int]
    manifest: ManifestClaims
    leaks: list[Leak]
    verdicts: list[FileVerdict] = field(default_factory=list)
    made_for: str | None = None
    """The household whose request the package answers, when known (it may differ from
    the recipient: a forwarded or guessed link); completeness is judged only for them."""
    foreign_profile: str | None = None
    """Whose ``account/profile.json`` (name, email, address: personal data like the
    recordings) the package holds when it is not the recipient's: the household the ledger
    knows for that account, or ``"?"`` when the ledger does not know the account."""
    file: str | None = None
    """Where a run keeps the zip (run folder relative), when a run downloaded it."""
    downloaded_at: str | None = None
    """When a run downloaded it (simulated time)."""

    @property
    def clean(self) -> bool:
        return (not self.foreign and not self.foreign_transcripts and not self.corrupt
                and self.foreign_profile is None)

    @property
    def undecidable(self) -> bool:
        """Most files match nothing in the ledger: probably the wrong ledger."""
        return self.files > 0 and self.unattributable * 2 > self.files

    @property
    def exit_code(self) -> int:
        """0: only the recipient's data, intact and complete; 1: a finding; 2: undecidable."""
        if self.undecidable:
            return 2
        findings = (self.foreign or self.foreign_transcripts or self.missing or self.corrupt
                    or self.duplicated or self.unattributable or self.foreign_profile)
        return 1 if findings else 0

    def to_dict(self, files: bool = False, leaks: bool = True) -> dict[str, Any]:
        """The ``packages`` entry of report.json (``leaks=False``: report.json lists the
        leaks on their own), with its leaks; ``files``: every file's verdict too."""
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "subject_household": self.subject_household,
            "subject_account": self.subject_account,
            "made_for": self.made_for,
            "files": self.files, "own": self.own,
            "foreign": dict(sorted(self.foreign.items())),
            "missing": self.missing, "corrupt": self.corrupt, "duplicated": self.duplicated,
            "unattributable": self.unattributable, "downloaded": self.downloaded,
            "foreign_transcripts": dict(sorted(self.foreign_transcripts.items())),
            "foreign_profile": self.foreign_profile,
            "manifest": self.manifest.to_dict(),
        }
        if leaks:
            out["leaks"] = [leak.to_dict() for leak in self.leaks]
        if self.file is not None:
            out["file"] = self.file
        if self.downloaded_at is not None:
            out["downloaded_at"] = self.downloaded_at
        if files:
            out["file_verdicts"] = [v.to_dict() for v in self.verdicts]
        return out


# -- reading the zip safely --------------------------------------------------------------
def _hostile_name(info: zipfile.ZipInfo) -> str | None:
    """Why this entry name is hostile, or None. Checked on the raw name, never normalised."""
    name = info.filename
    if "\x00" in name:
        return "NUL byte in name"
    if "\\" in name:
        return "backslash in name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' component"
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        return "symbolic link"
    return None


def _preflight(zf: zipfile.ZipFile, zip_path: Path, limits: Limits) -> list[zipfile.ZipInfo]:
    """Check the central directory before inflating anything; return the members to read."""
    infos = zf.infolist()
    hostile = [f"{i.filename!r}: {why}" for i in infos if (why := _hostile_name(i))]
    if hostile:
        raise HostilePackage(
            f"{zip_path}: refused, nothing extracted: {len(hostile)} hostile entry name(s): "
            f"{'; '.join(hostile[:10])}{' …' if len(hostile) > 10 else ''}",
            hostile)
    bomb: list[str] = []
    if len(infos) > limits.max_entries:
        bomb.append(f"{len(infos)} entries (limit {limits.max_entries})")
    total = sum(i.file_size for i in infos)
    big = [i for i in infos if i.file_size > limits.max_member_bytes]
    bomb += [f"{i.filename!r} declares {i.file_size} bytes (limit {limits.max_member_bytes})"
             for i in big[:5]]
    if total > limits.max_total_bytes:
        bomb.append(f"{total} bytes declared in total (limit {limits.max_total_bytes})")
    # Against the file on disk, not the members' compressed sizes: overlapping members
    # share compressed bytes, so their own sizes would hide the inflation.
    on_disk = max(zip_path.stat().st_size, 1)
    if total > limits.ratio_floor_bytes and total / on_disk > limits.max_ratio:
        bomb.append(f"inflates {total / on_disk:.0f}:1 ({total} bytes from {on_disk}; "
                    f"limit {limits.max_ratio:.0f}:1)")
    if bomb:
        raise ZipBomb(f"{zip_path}: refused as a zip bomb, not inflated: {'; '.join(bomb)}", bomb)
    encrypted = [i.filename for i in infos if i.flag_bits & 0x1]
    if encrypted:
        raise BadPackage(f"{zip_path}: encrypted member(s) cannot be judged: {encrypted[:3]}")
    unknown = [f"{i.filename!r} (method {i.compress_type})" for i in infos
               if i.compress_type not in _METHODS]
    if unknown:
        raise BadPackage(f"{zip_path}: member(s) with a compression method the auditor cannot "
                         f"read: {', '.join(unknown[:3])}")
    return [i for i in infos if not i.is_dir()]


class _Reader:
    """Streams members into memory, counting every inflated byte against the limits."""

    def __init__(self, zf: zipfile.ZipFile, zip_path: Path, limits: Limits) -> None:
        self.zf, self.zip_path, self.limits = zf, zip_path, limits
        self.total = 0

    def read(self, info: zipfile.ZipInfo) -> bytes:
        """The member's bytes; raises ZipBomb if it inflates beyond what it declared."""
        cap = min(info.file_size, self.limits.max_member_bytes)
        buf = bytearray()
        with self.zf.open(info) as fh:
            while chunk := fh.read(1024 * 1024):
                buf += chunk
                self.total += len(chunk)
                if len(buf) > cap or self.total > self.limits.max_total_bytes:
                    raise ZipBomb(f"{self.zip_path}: {info.filename!r} inflates beyond its "
                                  f"declared {info.file_size} bytes; stopped",
                                  [f"{info.filename!r} inflates beyond its declared size"])
        return bytes(buf)


def wav_pcm_sha256(data: bytes) -> tuple[str | None, str | None]:
    """(sha256 of the PCM frames, why not readable)."""
    try:
        wav = read_wav(data)
    except ValueError as exc:  # WavError, or a header wave cannot take
        return None, f"not a readable WAV: {exc}"
    pcm = hashlib.sha256(wav.pcm).hexdigest()
    if len(wav.pcm) < wav.declared_bytes:
        return pcm, f"truncated WAV: {len(wav.pcm)} of {wav.declared_bytes} PCM bytes"
    return pcm, None


# -- attribution -------------------------------------------------------------------------
def _norm_text(text: str) -> str:
    return " ".join(text.casefold().split())


def parse_time(value: str | None) -> datetime | None:
    """An ISO/RFC 3339 time (naive means UTC), or None for empty or unparsable input."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _time_key(value: str | None) -> tuple[int, str]:
    t = parse_time(value)
    return (0, t.isoformat()) if t else (1, value or "")


class _Attributor:
    """Assigns package files to ledger utterances; each utterance is claimed at most once."""

    def __init__(self, truths: list[Truth]) -> None:
        self.by_pcm: dict[str, list[Truth]] = defaultdict(list)
        self.by_text: dict[str, list[Truth]] = defaultdict(list)
        for t in truths:
            if t.pcm_sha256:
                self.by_pcm[t.pcm_sha256.lower()].append(t)
            if t.transcript.strip():
                self.by_text[_norm_text(t.transcript)].append(t)
        self.claimed: dict[str, str] = {}
        """utterance_id -> path of the first file that claimed it."""

    @staticmethod
    def _rank(cands: list[Truth], row: dict[str, str] | None, recording_id: str | None
              ) -> list[Truth]:
        """Best first: same recording time as the transcript row, same recording id, ok."""
        when = parse_time(row.get("recorded_at")) if row else None

        def key(t: Truth) -> tuple[int, int, int]:
            same_time = when is not None and parse_time(t.recorded_at) == when
            same_id = recording_id is not None and t.recording_id == recording_id
            return (0 if same_time else 1, 0 if same_id else 1, 0 if t.outcome == "ok" else 1)

        return sorted(cands, key=key)

    def _claim(self, v: FileVerdict, ranked: list[Truth], by: str) -> Truth:
        choice = next((t for t in ranked if t.utterance_id not in self.claimed), None)
        if choice is None:
            choice = ranked[0]
            v.duplicate_of = self.claimed[choice.utterance_id]
        else:
            self.claimed[choice.utterance_id] = v.path
        v.by, v.utterance_id = by, choice.utterance_id
        v.owner_household, v.owner_account = choice.household, choice.account_id
        return choice

    def by_audio(self, v: FileVerdict, row: dict[str, str] | None, rid: str | None
                 ) -> Truth | None:
        cands = self.by_pcm.get(v.pcm_sha256 or "")
        if not cands:
            return None
        return self._claim(v, self._rank(cands, row, rid), "pcm")

    def text_candidates(self, row: dict[str, str] | None, rid: str | None) -> list[Truth]:
        """Ledger lines this transcript row can only belong to (one household), best first."""
        if not row or not row.get("transcript", "").strip():
            return []
        cands = self.by_text.get(_norm_text(row["transcript"]), [])
        when = parse_time(row.get("recorded_at"))
        if when is not None:
            timed = [t for t in cands if parse_time(t.recorded_at) == when]
            cands = timed or cands
        if len({t.household for t in cands}) != 1:
            return []  # the words alone do not say whose it is
        return self._rank(cands, row, rid)

    def by_transcript(self, v: FileVerdict, row: dict[str, str] | None, rid: str | None
                      ) -> Truth | None:
        ranked = self.text_candidates(row, rid)
        return self._claim(v, ranked, "transcript") if ranked else None


def _norm_path(p: str) -> str:
    p = p.strip()
    return p[2:] if p.startswith("./") else p


def _read_transcripts(data: bytes) -> list[dict[str, str]]:
    text = data.decode("utf-8-sig", errors="replace")
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({(k or "").strip(): (v or "") for k, v in row.items() if isinstance(v, str)})
    return rows


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0]


def _resolve_subject(truths: list[Truth], household: str | None,
                     account: str | None) -> tuple[str | None, str | None]:
    """Complete the recipient's household and account from the ledger (never the manifest)."""
    if household is None and account is not None:
        owners = Counter(t.household for t in truths if t.account_id == account)
        household = owners.most_common(1)[0][0] if owners else None
    if account is None and household is not None:
        accounts = Counter(t.account_id for t in truths if t.household == household and t.account_id)
        if accounts:
            account = accounts.most_common(1)[0][0]
    return household, account


def audit_package(zip_path: str | Path, ledger_entries: Iterable[LedgerEntry],
                  subject_household: str | None = None, subject_account: str | None = None,
                  link_redeemed: bool = True, *, as_of: str | None = None,
                  made_for: str | None = None, accounts: Mapping[str, str] | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> PackageAudit:
    """Judge one package against the ledger by content.

    The subject is the household/account that received the package: its files are "own",
    anyone else's are foreign (a leak to the subject). It must be given (from the ledger's
    download record or by the caller): the manifest is never taken for it.
    ``made_for``: the household whose request the package answers, if known; when it is
    not the subject (a forwarded or guessed link) nothing is counted as missing.
    ``as_of``: recordings made after this time are not counted as missing.
    ``link_redeemed``: whether the package's link was used (someone holds it: default).
    ``accounts``: account id → household, known besides the recordings (the ledger's
    downloads, a run's registrations): whose profile a package holds when that account
    recorded nothing.
    """
    zip_path = Path(zip_path)
    if subject_household is None and subject_account is None:
        raise UnknownRecipient(f"{zip_path}: cannot tell who received this package: no "
                               "download of it in the ledger and no subject given")
    truths = _truths(ledger_entries)
    with _open_zip(zip_path) as zf:
        members = _preflight(zf, zip_path, limits)
        reader = _Reader(zf, zip_path, limits)
        by_name = {i.filename: i for i in members}
        claims, listed, request_id = _read_claims(reader, by_name, zip_path)
        rows: list[dict[str, str]] = []
        if TRANSCRIPTS in by_name:
            rows = _read_transcripts(_read_member(reader, by_name[TRANSCRIPTS], zip_path))
        subject = _Subject(*_resolve_subject(truths, subject_household, subject_account))
        judged = _judge_members(members, reader, listed, rows)
    verdicts = judged.verdicts
    attributor = _attribute(truths, judged)
    _mark_owners(verdicts, subject)

    truth_by_id = {t.utterance_id: t for t in truths}
    own_ids = {v.utterance_id for v in verdicts if v.status == "own" and not v.duplicate_of}
    foreign_files = [v for v in verdicts if v.status == "foreign" and not v.duplicate_of]
    text_only = _foreign_text_only(rows, judged.used_rows, attributor, subject)
    cutoff = parse_time(as_of)
    judge_missing = made_for is None or made_for == subject.household
    missing = _count_missing(truths, own_ids, subject, cutoff) if judge_missing else 0
    _count_claims(claims, listed, {i.filename for i in members}, verdicts)
    leaks = _leaks(request_id, foreign_files, text_only, truth_by_id,
                   subject.household, subject.account, link_redeemed)
    foreign_profile = _foreign_profile(claims.profile_account, truths, subject, accounts or {})
    _profile_leak(leaks, foreign_profile, claims.profile_account, request_id, subject,
                  link_redeemed)
    return PackageAudit(
        request_id=request_id, subject_household=subject.household,
        subject_account=subject.account, files=len(verdicts), own=len(own_ids),
        foreign=dict(Counter(v.owner_household or "?" for v in foreign_files)),
        missing=missing, corrupt=judged.corrupt,
        duplicated=sum(1 for v in verdicts if v.duplicate_of),
        unattributable=sum(1 for v in verdicts if v.by is None and not v.duplicate_of),
        downloaded=link_redeemed,
        foreign_transcripts=dict(Counter(t.household for t in text_only)), manifest=claims,
        leaks=leaks, verdicts=verdicts, made_for=made_for,
        foreign_profile=foreign_profile)


@dataclass(frozen=True)
class _Subject:
    """Who received the package: its files are "own", anyone else's are foreign."""

    household: str | None
    account: str | None

    def owns(self, household: str, account: str | None) -> bool:
        if self.household is not None:
            return household == self.household
        return account is not None and account == self.account


@dataclass
class _Judged:
    """The audio members read and checked, before attribution."""

    verdicts: list[FileVerdict] = field(default_factory=list)
    context: dict[str, tuple[dict[str, str] | None, str | None]] = field(default_factory=dict)
    used_rows: set[int] = field(default_factory=set)
    corrupt: int = 0


def _open_zip(zip_path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(zip_path)
    except FileNotFoundError as exc:
        raise BadPackage(f"{zip_path}: package not found") from exc
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BadPackage(f"{zip_path}: not a readable zip: {exc}") from exc


def _read_claims(reader: _Reader, by_name: Mapping[str, zipfile.ZipInfo], zip_path: Path
                 ) -> tuple[ManifestClaims, dict[str, dict[str, Any]], str]:
    """What the manifest and profile claim (recorded, never trusted): the claims, the
    listed files by path and the request id (the zip's name when the manifest has none)."""
    claims = ManifestClaims()
    listed: dict[str, dict[str, Any]] = {}
    request_id = zip_path.stem
    if MANIFEST in by_name:
        manifest = _json_member(reader, by_name[MANIFEST], zip_path)
        if isinstance(manifest, dict):
            claims.readable = True
            claims.format = _str(manifest.get("format"))
            claims.account_id = _str(manifest.get("account_id"))
            request_id = _str(manifest.get("request_id")) or request_id
            for item in manifest.get("files") or []:
                if isinstance(item, dict) and isinstance(item.get("path"), str):
                    listed[_norm_path(item["path"])] = item
    if PROFILE in by_name:
        profile = _json_member(reader, by_name[PROFILE], zip_path)
        if isinstance(profile, dict):
            claims.profile_account = _str(profile.get("account_id"))
    return claims, listed, request_id


def _index_rows(rows: list[dict[str, str]]
                ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """Transcript rows by file path (with and without ``voice/``) and by recording id."""
    row_by_file: dict[str, dict[str, str]] = {}
    row_by_id: dict[str, dict[str, str]] = {}
    for row in rows:
        f = _norm_path(row.get("file", ""))
        if f:
            row_by_file.setdefault(f, row)
            row_by_file.setdefault(f"voice/{f}", row)
        if row.get("recording_id"):
            row_by_id.setdefault(row["recording_id"], row)
    return row_by_file, row_by_id


def _judge_members(members: list[zipfile.ZipInfo], reader: _Reader,
                   listed: dict[str, dict[str, Any]], rows: list[dict[str, str]]) -> _Judged:
    """Read every member; a verdict per audio file (corrupt or not), corrupt others counted."""
    row_by_file, row_by_id = _index_rows(rows)
    judged = _Judged()
    for info in members:
        name = info.filename
        claim = listed.get(name)
        try:
            data = reader.read(info)
            read_error = None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            data, read_error = b"", f"unreadable member: {exc}"
        digest = hashlib.sha256(data).hexdigest()
        why = read_error or _manifest_mismatch(claim, digest, len(data))
        if not name.lower().endswith(".wav"):
            judged.corrupt += why is not None
            continue
        v = FileVerdict(path=name, bytes=len(data), sha256=digest,
                        claimed_owner=_claimed_owner(claim))
        if read_error is None:
            v.pcm_sha256, wav_error = wav_pcm_sha256(data)
            why = why or wav_error
        v.corrupt = why
        judged.corrupt += why is not None
        rid = (_str(claim.get("recording_id")) if claim else None) or _stem(name)
        row = row_by_file.get(name) or row_by_id.get(rid)
        if row is not None:
            judged.used_rows.add(id(row))
        judged.context[name] = (row, rid)
        judged.verdicts.append(v)
    return judged


def _attribute(truths: list[Truth], judged: _Judged) -> _Attributor:
    attributor = _Attributor(truths)
    # Exact audio first for every file, so that a transcript guess never takes an
    # utterance that another file proves by its PCM.
    for v in judged.verdicts:
        attributor.by_audio(v, *judged.context[v.path])
    for v in judged.verdicts:
        if v.by is None:
            attributor.by_transcript(v, *judged.context[v.path])
    return attributor


def _mark_owners(verdicts: list[FileVerdict], subject: _Subject) -> None:
    """Own or foreign for each attributed file; an unattributed copy of another is a duplicate."""
    seen_unattributed: dict[str, str] = {}
    for v in verdicts:
        if v.by is None:
            key = v.pcm_sha256 or v.sha256
            if key in seen_unattributed:
                v.duplicate_of = seen_unattributed[key]
            else:
                seen_unattributed[key] = v.path
            continue
        v.status = "own" if subject.owns(v.owner_household or "", v.owner_account) else "foreign"


def _foreign_text_only(rows: list[dict[str, str]], used_rows: set[int],
                       attributor: _Attributor, subject: _Subject) -> list[Truth]:
    """Transcript rows without their audio in the package still carry personal data."""
    text_only: list[Truth] = []
    for row in rows:
        if id(row) in used_rows:
            continue
        ranked = attributor.text_candidates(row, row.get("recording_id") or None)
        if ranked and not subject.owns(ranked[0].household, ranked[0].account_id):
            text_only.append(ranked[0])
    return text_only


def _foreign_profile(account: str | None, truths: list[Truth], subject: _Subject,
                     accounts: Mapping[str, str]) -> str | None:
    """Whose profile the package holds, when it is not the recipient's: the household the
    ledger (or ``accounts``) knows for ``account`` (the profile's ``account_id``), or
    ``"?"`` when neither knows it but the recipient's account is known and differs. None:
    the recipient's own, no profile, or no way to tell."""
    if account is None:
        return None
    households = sorted({t.household for t in truths if t.account_id == account}
                        | ({accounts[account]} if account in accounts else set()))
    if households:
        return None if subject.owns(households[0], account) else households[0]
    if subject.account is not None and account != subject.account:
        return "?"
    return None


def _profile_leak(leaks: list[Leak], household: str | None, account: str | None,
                  request_id: str, subject: _Subject, redeemed: bool) -> None:
    """Another household's profile in the package is a leak of that household's data even
    when no recording of it is there (a wrongly cached package of an account without any):
    mark its leak, or add one of no recordings. An account the ledger does not know
    (``"?"``) names no household to report; ``foreign_profile`` still says so."""
    if household is None or household == "?":
        return
    for lk in leaks:
        if lk.from_household == household:
            lk.profile = True
            return
    leaks.append(Leak(request_id=request_id, from_household=household, from_account=account,
                      to_household=subject.household, to_account=subject.account,
                      recordings=0, data_subjects=1, first_recorded_at=None,
                      last_recorded_at=None, link_redeemed=redeemed, profile=True))


def _count_missing(truths: list[Truth], own_ids: set[str | None], subject: _Subject,
                   cutoff: datetime | None) -> int:
    """The subject's stored recordings (up to ``cutoff``) the package does not hold."""
    missing = 0
    for t in truths:
        if t.outcome != "ok" or not subject.owns(t.household, t.account_id):
            continue
        when = parse_time(t.recorded_at)
        if cutoff is not None and when is not None and when > cutoff:
            continue
        missing += t.utterance_id not in own_ids
    return missing


def _count_claims(claims: ManifestClaims, listed: dict[str, dict[str, Any]], present: set[str],
                  verdicts: list[FileVerdict]) -> None:
    """How far the manifest's list and claimed owners agree with the package's content."""
    claims.listed = len(listed)
    claims.claimed_owners = dict(Counter(o for c in listed.values()
                                         if (o := _claimed_owner(c)) is not None))
    claims.listed_not_present = sum(1 for p in listed if p not in present)
    claims.present_not_listed = sum(
        1 for v in verdicts if v.path not in listed) if claims.readable else 0
    claims.contradicted = sum(
        1 for v in verdicts
        if v.by is not None and v.claimed_owner is not None
        and v.owner_account is not None and v.claimed_owner != v.owner_account)


def _read_member(reader: _Reader, info: zipfile.ZipInfo, zip_path: Path) -> bytes:
    try:
        return reader.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError):
        return b""  # counted as corrupt where the member is judged


def _json_member(reader: _Reader, info: zipfile.ZipInfo, zip_path: Path) -> Any:
    """A member parsed as JSON, or None when it is not JSON (judged by content instead)."""
    try:
        return json.loads(_read_member(reader, info, zip_path))
    except ValueError:
        return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _claimed_owner(claim: dict[str, Any] | None) -> str | None:
    if not claim:
        return None
    for key in ("owner_account_id", "owner", "account_id"):
        value = claim.get(key)
        if isinstance(value, str):
            return value
    return None


def _manifest_mismatch(claim: dict[str, Any] | None, digest: str, size: int) -> str | None:
    if not claim:
        return None
    want = claim.get("sha256")
    if isinstance(want, str) and want.lower() != digest:
        return f"sha256 {digest[:12]}… but the manifest says {want[:12]}…"
    want_bytes = claim.get("bytes")
    if isinstance(want_bytes, int) and want_bytes != size:
        return f"{size} bytes but the manifest says {want_bytes}"
    return None


def _leaks(request_id: str, files: list[FileVerdict], text_only: list[Truth],
           truth_by_id: dict[str, Truth], to_household: str | None, to_account: str | None,
           redeemed: bool) -> list[Leak]:
    groups: dict[tuple[str, str | None], tuple[list[tuple[Truth, str]], list[Truth]]] = {}
    for v in files:
        t = truth_by_id[v.utterance_id or ""]
        groups.setdefault((t.household, t.account_id), ([], []))[0].append((t, v.path))
    for t in text_only:
        groups.setdefault((t.household, t.account_id), ([], []))[1].append(t)
    leaks = []
    for (household, account), (audio, texts) in groups.items():
        everything = [t for t, _ in audio] + texts
        times = sorted((t.recorded_at for t in everything if t.recorded_at), key=_time_key)
        audio.sort(key=lambda tp: (_time_key(tp[0].recorded_at), tp[1]))
        leaks.append(Leak(
            request_id=request_id, from_household=household, from_account=account,
            to_household=to_household, to_account=to_account, recordings=len(audio),
            data_subjects=len({t.speaker for t in everything if t.speaker}),
            first_recorded_at=times[0] if times else None,
            last_recorded_at=times[-1] if times else None,
            link_redeemed=redeemed, transcript_only=len(texts),
            samples=[Sample(t.recorded_at, t.speaker, t.transcript, path)
                     for t, path in audio[:SAMPLES_PER_LEAK]]))
    leaks.sort(key=lambda lk: (-(lk.recordings + lk.transcript_only), lk.from_household))
    return leaks


# -- the command -------------------------------------------------------------------------
def _subject_args(value: str, truths: list[Truth],
                  downloads: list[DownloadRecord]) -> tuple[str | None, str | None]:
    """``--subject`` may name a household or an account; the ledger says which. A name the
    ledger does not know (no utterance, no download) cannot be judged for."""
    if any(t.household == value for t in truths) or any(d.household == value for d in downloads):
        return value, _download_account(value, downloads)
    if any(t.account_id == value for t in truths) or any(d.account_id == value for d in downloads):
        return None, value
    raise BadLedger(f"--subject {value!r} names no household or account in this ledger "
                    "(wrong ledger, or a typo?)")


def _download_account(household: str, downloads: list[DownloadRecord]) -> str | None:
    return next((d.account_id for d in downloads if d.household == household and d.account_id),
                None)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def recipient_from_ledger(zip_path: Path, downloads: list[DownloadRecord]) -> DownloadRecord:
    """The ledger's record of who downloaded exactly this zip (by its sha256)."""
    try:
        digest = file_sha256(zip_path)
    except OSError as exc:
        raise BadPackage(f"{zip_path}: cannot read the package: {exc.strerror}") from None
    hits = [d for d in downloads if d.sha256 == digest]
    households = sorted({d.household for d in hits})
    if not households:
        raise UnknownRecipient(
            f"{zip_path}: cannot tell who received this package: the ledger records no "
            f"download with its sha256 ({digest[:12]}…); give --subject")
    if len(households) > 1:
        raise UnknownRecipient(
            f"{zip_path}: cannot tell who received this package: the ledger records "
            f"downloads of it by {', '.join(households)}; give --subject")
    return hits[0]


def audit_table(audit: PackageAudit, zip_path: Path) -> str:
    foreign = ", ".join(f"{h}: {n}" for h, n in sorted(audit.foreign.items())) or "none"
    m = audit.manifest
    lines = [
        f"package   {zip_path}  (request {audit.request_id})",
        f"recipient household {audit.subject_household or '-'}, "
        f"account {audit.subject_account or '-'}"
        + (f"; made for {audit.made_for} (completeness not judged)"
           if audit.made_for not in (None, audit.subject_household) else ""),
        f"files     {audit.files}   own {audit.own}   foreign {sum(audit.foreign.values())} "
        f"({foreign})   missing {audit.missing}   corrupt {audit.corrupt}   "
        f"duplicated {audit.duplicated}   unattributable {audit.unattributable}",
    ]
    broken = [v for v in audit.verdicts if v.corrupt]
    for v in broken[:5]:
        lines.append(f"corrupt   {v.path}: {v.corrupt}")
    if len(broken) > 5:
        lines.append(f"corrupt   … and {len(broken) - 5} more (--json --files lists them)")
    if audit.foreign_profile is not None:
        lines.append(f"profile   account/profile.json is another account's "
                     f"({audit.foreign_profile}, account {audit.manifest.profile_account})")
    if audit.foreign_transcripts:
        lines.append("transcripts without audio from: " + ", ".join(
            f"{h}: {n}" for h, n in sorted(audit.foreign_transcripts.items())))
    if m.readable:
        owners = ", ".join(f"{a}: {n}" for a, n in sorted(m.claimed_owners.items())) or "-"
        lines.append(f"manifest  subject {m.account_id or '-'}, profile "
                     f"{m.profile_account or '-'}; lists {m.listed} (owners claimed: {owners}); "
                     f"{m.contradicted} claim(s) contradicted by content; "
                     f"{m.listed_not_present} listed but absent; "
                     f"{m.present_not_listed} recording(s) present but unlisted")
    else:
        lines.append("manifest  absent or unreadable: judged by content alone")
    if not audit.leaks:
        lines.append("leaks     none")
        return "\n".join(lines)
    lines.append("leaks")
    header = ("from", "to", "recordings", "subjects", "first recorded", "last recorded",
              "redeemed")
    body = [(f"{lk.from_household} ({lk.from_account or '-'})",
             f"{lk.to_household or '-'} ({lk.to_account or '-'})",
             str(lk.recordings) + (f" +{lk.transcript_only} text" if lk.transcript_only else ""),
             str(lk.data_subjects), lk.first_recorded_at or "-", lk.last_recorded_at or "-",
             "yes" if lk.link_redeemed else "no") for lk in audit.leaks]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    for r in [header, *body]:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def audit_against_ledger(package: Path, ledger_path: Path, subject: str | None,
                         as_of: str | None, link_redeemed: bool) -> PackageAudit:
    """``overheard audit``: judge ``package`` against the ledger at ``ledger_path``. The
    recipient is ``subject``, else whoever the ledger records as having downloaded a zip
    with this sha256. Raises :class:`AuditError` when that cannot be decided."""
    entries, downloads = load_records(ledger_path)
    truths = _truths(entries)
    made_for = None
    if subject is not None:
        household, account = _subject_args(subject, truths, downloads)
    else:
        record = recipient_from_ledger(package, downloads)
        household, account, made_for = record.household, record.account_id, record.made_for
    known = {d.account_id: d.household for d in downloads if d.account_id}
    return audit_package(package, entries, household, account,
                         link_redeemed=link_redeemed, as_of=as_of, made_for=made_for,
                         accounts=known)
