"""Reports of a scenario run: report.json, junit.xml, report.html and a one-screen summary.

``report.json`` has a fixed key order (documented in :func:`report_dict`); everything in it
comes from the seeded run except the ``run`` key (wall-clock start and end, where it ran),
so the same scenario and seed give the same bytes apart from ``run``. ``junit.xml`` has one
testcase per expectation for CI. ``report.html`` is written for a data-protection officer:
the verdict, a timeline, who received whose recordings (an SVG flow between households),
sample transcripts, link redemptions and the GDPR Art. 33(3) notification draft with the
Art. 34 decision, from the same :func:`breach_notification` as the JSON.
"""

from __future__ import annotations

import functools
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, select_autoescape

from simulator.judge.audit import Leak, PackageAudit, parse_time
from simulator.judge.identify import in_words

Verdict = Literal["pass", "fail", "unknown"]
NOTIFY_WITHIN = timedelta(hours=72)
SUMMARY_LIST_CAP = 5


@dataclass(frozen=True)
class Expectation:
    """One ``[[expect]]`` of the scenario and whether it held."""

    name: str
    passed: bool | None
    """None: the run could not decide (a junit ``error``, verdict ``unknown``)."""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the run's story, in simulated time."""

    at: str
    step: str
    what: str


@dataclass(frozen=True)
class Redemption:
    """One try to download a package by its link, and what came of it."""

    at: str
    request_id: str | None
    """The request the link answers (None: no link was found to try)."""
    by: str
    """The household that tried."""
    result: str
    """``downloaded``, the HTTP status and error code, or why there was no link."""


@dataclass(frozen=True)
class GuardAlert:
    """What one of the backend's guards raised during the run."""

    at: str
    guard: str
    request_id: str | None
    summary: str


@dataclass(frozen=True)
class Loss:
    """Recordings of one household destroyed by another household's erasure request."""

    of_household: str
    of_account: str | None
    recordings: int
    data_subjects: int
    first_recorded_at: str
    last_recorded_at: str
    by_request: str
    by_household: str
    by_account: str


@dataclass
class RunResult:
    """Everything the reports say about one run, as typed values (serialised only by
    :func:`report_dict` and the writers below).

    ``leaks`` default to the leaks of all packages. ``aware_at`` is when the controller
    became aware of the breach (simulated time: the 72-hour clock of Art. 33 starts
    there). ``started_at``/``finished_at`` are the wall clock of the run itself and go
    only under ``run``.
    """

    scenario: str
    seed: int
    verdict: Verdict
    expectations: list[Expectation]
    packages: list[PackageAudit]
    leaks: list[Leak] | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)
    link_redemptions: list[Redemption] = field(default_factory=list)
    alerts: list[GuardAlert] = field(default_factory=list)
    aware_at: str | None = None
    measures_taken: list[str] = field(default_factory=list)
    description: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    run_info: dict[str, str] = field(default_factory=dict)
    """More about where and how it ran (backend URL, out dir): goes under ``run``."""
    lost: list[Loss] = field(default_factory=list)
    """Recordings destroyed by someone else's request."""

    @property
    def exit_code(self) -> int:
        """0: all expectations held; 1: one failed; 2: the run could not decide."""
        return {"pass": 0, "fail": 1}.get(self.verdict, 2)

    def __post_init__(self) -> None:
        if self.leaks is None:
            self.leaks = [leak for p in self.packages for leak in p.leaks]

    @property
    def all_leaks(self) -> list[Leak]:
        return list(self.leaks or [])


# -- GDPR Art. 33(3) / Art. 34 -----------------------------------------------------------
def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _approx(n: int) -> str:
    """'about 1,700' for an Art. 33(3)(a) approximate number; small numbers stay exact."""
    if n < 100:
        return f"{n:,}"
    magnitude = 10 ** (len(str(n)) - 2)
    rounded = round(n / magnitude) * magnitude
    return f"{n:,}" if rounded == n else f"about {rounded:,}"


CONSEQUENCES = [
    "Identification of the data subjects by voice and by what they say (names, places, "
    "people they address), as journalists did from a misdirected package in 2018.",
    "Insight into private life at home: daily routines, when the household is present or "
    "away, conversations picked up by the device, possibly special categories of data "
    "(Art. 9: health, beliefs, sex life) spoken near it.",
    "Loss of control over the recordings: the recipient's copy can be kept, copied or "
    "published; risks of embarrassment, profiling, stalking or burglary.",
]

PROPOSED = [
    "Ask the recipient to delete every copy and confirm the deletion in writing.",
    "Check every package item's owner against the requester before release "
    "(guard export.ownership_check); a second operator for any assignment that differs "
    "from the requester's own account (ops.four_eyes).",
    "Bind download links to the requester, single-use and expiring (delivery.bound_links).",
    "Audit all packages delivered in the same period for the same error.",
]


def _identifiable_reason(leaks: list[Leak]) -> str:
    """The Art. 34 reasoning's account of how identifiable the leaked households are."""
    named = [lk.from_household for lk in leaks if lk.profile]
    said = []
    for lk in leaks:
        ident = lk.identifiability
        if ident is None or not ident.clues:
            continue
        k = ident.matching_households
        kinds = sorted({c.kind for c in ident.clues})
        said.append(f"{lk.from_household}: {len(ident.clues)} clues ({', '.join(kinds)}) "
                    f"in the transcripts, {k} household(s) in the world match all of them"
                    + (" (identifiable)" if k == 1 else ""))
    return (("; the recordings identify the speakers by what they say, as in 2018: "
             + "; ".join(said)) if said else "") + (
        ("; the account profile in the package names the account holder of "
         + ", ".join(named) + " (identified)") if named else "")


def breach_notification(leaks: Iterable[Leak], aware_at: str | None, *,
                        measures_taken: Iterable[str] = (),
                        lost: Iterable[Loss] = ()) -> dict[str, Any]:
    """A draft of the Art. 33(3) notification to the supervisory authority, and Art. 34.

    Art. 33 applies as soon as another household's data was put in someone's package (the
    controller cannot show the risk is unlikely: voice recordings identify people), and
    when someone's recordings were destroyed by another's request (a breach of integrity
    and availability, Art. 4(12)). Art. 34 notice to the data subjects is owed when the
    data was actually obtained: a link was redeemed. The deadline is 72 hours after
    ``aware_at``.
    """
    leaks = list(leaks)
    lost = list(lost)
    aware = parse_time(aware_at)
    deadline = _iso(aware + NOTIFY_WITHIN) if aware else None
    taken = list(measures_taken)
    if not leaks and lost:
        return _loss_notification(lost, aware_at, deadline, taken)
    if not leaks:
        return {
            "required": False,
            "reason": "no package contained another household's recordings",
            "aware_at": aware_at, "deadline": None,
            "nature": None,
            "data_subjects": {"categories": [], "approximate_number": 0, "text": "none"},
            "records": {"categories": [], "approximate_number": 0, "text": "none"},
            "households_affected": [], "recipients": [],
            "likely_consequences": [], "measures_taken": taken, "measures_proposed": [],
            "contact": None,
            "art34": {"required": False, "reason": "no personal data breach was found",
                      "data_subjects": 0},
        }
    # Distinct people per source household: one household leaked to two recipients is
    # still the same people.
    subjects_by_household: dict[str, int] = {}
    for lk in leaks:
        h = lk.from_household
        subjects_by_household[h] = max(subjects_by_household.get(h, 0), lk.data_subjects)
    subjects = sum(subjects_by_household.values())
    recordings = sum(lk.recordings for lk in leaks)
    text_only = sum(lk.transcript_only for lk in leaks)
    records = recordings + text_only
    recipients = sorted({_label(lk.to_household, lk.to_account) for lk in leaks})
    redeemed = [lk for lk in leaks if lk.link_redeemed]
    times = sorted(t for lk in leaks for t in (lk.first_recorded_at, lk.last_recorded_at)
                   if t)
    span = f" recorded between {times[0]} and {times[-1]}" if times else ""
    obtained = ("The recipient downloaded the package: the data was obtained."
                if redeemed else
                "The package's link was not redeemed: no download of the data is known.")
    profiles = sorted({lk.from_household for lk in leaks if lk.profile})
    nature = _misdelivery_nature(records, span, len(subjects_by_household), profiles,
                                 recipients) + " " + obtained
    if redeemed:
        art34 = {"required": True,
                 "reason": "the package was downloaded by a person not entitled to it; the "
                           "recordings are out of the controller's control and likely to "
                           "result in a high risk (Art. 34(1)); no Art. 34(3) exemption applies "
                           "(the audio was not encrypted to the recipient)"
                           + _identifiable_reason(redeemed),
                 "data_subjects": subjects}
    else:
        art34 = {"required": False,
                 "reason": "the link was never redeemed, so the data was not obtained; the "
                           "measures taken mean the high risk is no longer likely to "
                           "materialise (Art. 34(3)(b))",
                 "data_subjects": subjects}
    if lost:
        nature += " " + _loss_nature(lost)
    return {
        "required": True,
        "reason": f"personal data ({_what_reached(records, profiles)}) reached a person not "
                  "entitled to it" + ("; recordings of others were destroyed" if lost else ""),
        "aware_at": aware_at,
        "deadline": deadline,
        "nature": nature,
        "data_subjects": {
            "categories": ["customers (account holders)", "members of their households",
                           "other people speaking near the device (visitors)"],
            "approximate_number": subjects,
            "text": f"{_approx(subjects)} people (distinct speakers) in "
                    f"{len(subjects_by_household)} household(s)",
        },
        "records": {
            "categories": ["voice recordings (audio)", "transcripts of the recordings",
                           "recording times and device names"]
                          + ([PROFILE_CATEGORY] if profiles else []),
            "approximate_number": records,
            "text": f"{_approx(records)} recording(s)"
                    + (f", of which {text_only:,} as transcripts only" if text_only else "")
                    + (f", and the account profile of {', '.join(profiles)}" if profiles
                       else ""),
        },
        "households_affected": sorted(subjects_by_household),
        "recipients": recipients,
        "likely_consequences": list(CONSEQUENCES),
        "measures_taken": taken,
        "measures_proposed": list(PROPOSED) + (
            ["Notify the data subjects without undue delay (Art. 34)."] if redeemed else []),
        "contact": "data protection officer: name and contact details (Art. 33(3)(b))",
        "art34": art34,
    }


PROFILE_CATEGORY = "account profile (the holder's name, email address and postal address)"


def _misdelivery_nature(records: int, span: str, households: int, profiles: list[str],
                        recipients: list[str]) -> str:
    """Art. 33(3)(a)'s nature of a misdelivery: what went to whom (recordings, profiles)."""
    to = (f"put into Art. 15 access package(s) prepared for another customer "
          f"({', '.join(recipients)}).")
    if not records:
        return (f"Confidentiality breach by misdelivery: the account profile ({PROFILE_CATEGORY}) "
                f"of {', '.join(profiles)} was {to}")
    text = (f"Confidentiality breach by misdelivery: {records:,} voice recording(s) "
            f"(audio and transcripts){span}, belonging to {households} household(s), were {to}")
    if profiles:
        text += f" The package(s) also held the account profile of {', '.join(profiles)}."
    return text


def _what_reached(records: int, profiles: list[str]) -> str:
    return ", ".join((["voice recordings"] if records else [])
                     + (["an account profile"] if profiles else []))


def _loss_nature(lost: list[Loss]) -> str:
    parts = [f"{lk.recordings:,} recording(s) of {lk.of_household} destroyed by "
             f"{lk.by_household}'s erasure request {lk.by_request}" for lk in lost]
    return ("Integrity and availability breach (Art. 4(12)): " + "; ".join(parts)
            + ", where they had been stored under the requester's account.")


def _loss_notification(lost: list[Loss], aware_at: str | None,
                       deadline: str | None, taken: list[str]) -> dict[str, Any]:
    """Art. 33(3) for data destroyed, not disclosed."""
    subjects: dict[str, int] = {}
    for lk in lost:
        subjects[lk.of_household] = max(subjects.get(lk.of_household, 0), lk.data_subjects)
    people = sum(subjects.values())
    records = sum(lk.recordings for lk in lost)
    return {
        "required": True,
        "reason": "personal data (voice recordings) was destroyed without its owners' "
                  "request: a breach of integrity and availability",
        "aware_at": aware_at, "deadline": deadline,
        "nature": _loss_nature(lost),
        "data_subjects": {
            "categories": ["customers (account holders)", "members of their households"],
            "approximate_number": people,
            "text": f"{_approx(people)} people (distinct speakers) in {len(subjects)} household(s)"},
        "records": {"categories": ["voice recordings (audio)", "transcripts of the recordings"],
                    "approximate_number": records, "text": f"{_approx(records)} recording(s)"},
        "households_affected": sorted(subjects),
        "recipients": [],
        "likely_consequences": [
            "Loss of the data subjects' voice history: they can no longer access (Art. 15), "
            "correct or port it, and the controller cannot answer for it.",
            "Their recordings had been stored under another account: that account's holder "
            "could see and export them before the deletion.",
        ],
        "measures_taken": taken,
        "measures_proposed": [
            "Revoke device bindings and tokens at resale (guard binding.revoke_on_transfer).",
            "Before an erasure, check that every recording to delete was made by the "
            "subject's own devices while bound to them.",
            "Tell the affected households what was lost.",
        ],
        "contact": "data protection officer: name and contact details (Art. 33(3)(b))",
        "art34": {"required": False,
                  "reason": "the recordings were destroyed, not disclosed by the erasure; "
                            "no one obtained them through it",
                  "data_subjects": people},
    }


# -- report.json -------------------------------------------------------------------------
def report_dict(result: RunResult) -> dict[str, Any]:
    """report.json as a dict, keys in this order (a contract):

    ``scenario``, ``description``, ``seed``, ``verdict``, ``expectations``
    ``[{name, passed, detail}]``, ``packages`` (audit entries without their leaks),
    ``leaks``, ``lost`` (recordings destroyed by someone else's request),
    ``breach_notification``, ``timeline`` ``[{at, step, what}]``,
    ``link_redemptions``, ``alerts`` (what the guards raised), and last ``run`` (``started_at``, ``finished_at``,
    ``duration_seconds``, then ``run_info``): the only part that differs between two runs of
    the same seed.
    """
    started, finished = parse_time(result.started_at), parse_time(result.finished_at)
    duration = round((finished - started).total_seconds(), 3) if started and finished else None
    return {
        "scenario": result.scenario,
        "description": result.description,
        "seed": result.seed,
        "verdict": result.verdict,
        "expectations": [e.to_dict() for e in result.expectations],
        "packages": [p.to_dict(leaks=False) for p in result.packages],
        "leaks": [lk.to_dict() for lk in result.all_leaks],
        "lost": [asdict(lk) for lk in result.lost],
        "breach_notification": breach_notification(
            result.all_leaks, result.aware_at, measures_taken=result.measures_taken,
            lost=result.lost),
        "timeline": [asdict(t) for t in result.timeline],
        "link_redemptions": [asdict(r) for r in result.link_redemptions],
        "alerts": [asdict(a) for a in result.alerts],
        "run": {"started_at": result.started_at, "finished_at": result.finished_at,
                "duration_seconds": duration, **result.run_info},
    }


def report_json(result: RunResult) -> str:
    return json.dumps(report_dict(result), indent=2, ensure_ascii=False) + "\n"


# -- junit.xml ---------------------------------------------------------------------------
def _seconds(value: float | None) -> str:
    """junit ``time``: seconds with millisecond precision."""
    return f"{float(value or 0):.3f}"


def junit_xml(result: RunResult) -> bytes:
    """One testsuite, one testcase per expectation; ``failure`` or ``error`` with the detail."""
    suite_name = f"overheard.{result.scenario}"
    failures = sum(1 for e in result.expectations if e.passed is False)
    errors = sum(1 for e in result.expectations if e.passed is None)
    report = report_dict(result)
    root = ET.Element("testsuites", name="overheard", tests=str(len(result.expectations)),
                      failures=str(failures), errors=str(errors))
    suite = ET.SubElement(root, "testsuite", name=suite_name,
                          tests=str(len(result.expectations)), failures=str(failures),
                          errors=str(errors), skipped="0",
                          time=_seconds(report["run"]["duration_seconds"]))
    props = ET.SubElement(suite, "properties")
    for name, value in (("seed", result.seed), ("verdict", result.verdict)):
        ET.SubElement(props, "property", name=name, value=str(value))
    for e in result.expectations:
        case = ET.SubElement(suite, "testcase", classname=suite_name, name=e.name,
                             time=_seconds(0))
        if e.passed is False:
            ET.SubElement(case, "failure", message=e.detail or "expectation not met",
                          type="ExpectationFailed").text = e.detail
        elif e.passed is None:
            ET.SubElement(case, "error", message=e.detail or "could not be decided",
                          type="Undecided").text = e.detail
        elif e.detail:
            ET.SubElement(case, "system-out").text = e.detail
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"


# -- report.html -------------------------------------------------------------------------
def _label(household: str | None, account: str | None) -> str:
    return household or account or "?"


Flow = dict[str, Any]
"""One arrow of the flow picture: ``n`` recordings, ``people`` data subjects, ``kind``."""

# The flow picture's layout, in SVG units.
_LEFT_W, _RIGHT_W, _GAP, _TOP, _MID, _LINE, _LEFT_H = 230, 300, 24, 44, 240, 20, 46
_X_LEFT = 20
_X_RIGHT = _X_LEFT + _LEFT_W + _MID


def flow_picture(packages: list[PackageAudit], leaks: list[Leak]) -> dict[str, Any]:
    """Layout of the flow SVG: whose recordings (left) went into whose package (right).

    Each recipient box lists what it received, one line per source; each arrow ends at its
    line, so no label sits on a curve. Grey: a package's own recordings; red: another
    household's. Stroke width grows with the log of the count.
    """
    flows, recipients = _flows(packages, leaks)
    # Recipients first: their lines fix where every arrow ends.
    right_nodes, ends, right_bottom = _recipient_nodes(flows, recipients)
    left_nodes, starts, y = _source_nodes(flows, ends, right_bottom)
    x1, x2 = _X_LEFT + _LEFT_W, _X_RIGHT - 2
    edges = []
    for (src, dst), f in sorted(flows.items(), key=lambda kv: (kv[1]["kind"] == "foreign",
                                                                kv[0])):
        y1, y2 = starts[(src, dst)], ends[(src, dst)]
        cx = (x1 + x2) / 2
        edges.append({
            "d": f"M {x1} {y1:.1f} C {cx:.1f} {y1:.1f}, {cx:.1f} {y2:.1f}, {x2} {y2:.1f}",
            "kind": f["kind"], "width": round(1.5 + 2.5 * math.log10(f["n"] + 1), 1)})
    height = max(right_bottom, y - _GAP) + 20
    return {"width": _X_RIGHT + _RIGHT_W + 20, "height": height,
            "nodes": left_nodes + right_nodes, "edges": edges,
            "left_title_x": _X_LEFT, "right_title_x": _X_RIGHT, "mid_x": x1 + _MID / 2,
            "mid_y": _TOP + 20}


def _flows(packages: list[PackageAudit], leaks: list[Leak]
           ) -> tuple[dict[tuple[str, str], Flow], list[str]]:
    """The arrows by (source, recipient), and the recipients in order of appearance."""
    flows: dict[tuple[str, str], Flow] = {}
    recipients: list[str] = []

    def add(src: str, dst: str, n: int, kind: str, people: int = 0) -> None:
        f = flows.setdefault((src, dst), {"n": 0, "people": 0, "kind": kind})
        f["n"] += n
        f["people"] = max(f["people"], people)

    for p in packages:
        dst = _label(p.subject_household, p.subject_account)
        if dst not in recipients:
            recipients.append(dst)
        if p.own:
            add(dst, dst, p.own, "own")
    for lk in leaks:
        dst = _label(lk.to_household, lk.to_account)
        if dst not in recipients:
            recipients.append(dst)
        add(lk.from_household, dst, lk.recordings + lk.transcript_only, "foreign",
            lk.data_subjects)
    return flows, recipients


def _recipient_nodes(flows: dict[tuple[str, str], Flow], recipients: list[str]
                     ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], float], float]:
    """The right-hand boxes, where each arrow ends, and the boxes' bottom."""
    incoming: dict[str, list[tuple[str, Flow]]] = {h: [] for h in recipients}
    for (src, dst), f in flows.items():
        incoming[dst].append((src, f))
    for h in recipients:
        incoming[h].sort(key=lambda sf: (sf[1]["kind"] != "own", -sf[1]["n"], sf[0]))
    right_nodes: list[dict[str, Any]] = []
    ends: dict[tuple[str, str], float] = {}
    y = _TOP
    for h in recipients:
        rows = []
        for i, (src, f) in enumerate(incoming[h]):
            base = y + 44 + i * _LINE
            text = (f"own recordings: {f['n']:,}" if f["kind"] == "own" else
                    f"from {src}: {f['n']:,}" + (f" · {f['people']} people" if f["people"] else ""))
            rows.append({"text": text, "kind": f["kind"], "y": base})
            ends[(src, h)] = base - 4
        if not rows:
            rows.append({"text": "no recordings", "kind": "none", "y": y + 44})
        height = 30 + _LINE * len(rows) + 8
        right_nodes.append({"x": _X_RIGHT, "y": y, "w": _RIGHT_W, "h": height, "label": h,
                            "rows": rows})
        y += height + _GAP
    return right_nodes, ends, y - _GAP


def _source_nodes(flows: dict[tuple[str, str], Flow], ends: dict[tuple[str, str], float],
                  right_bottom: float
                  ) -> tuple[list[dict[str, Any]], dict[tuple[str, str], float], float]:
    """The left-hand boxes, where each arrow starts, and the y below the last box."""
    # Sources in the order of where their arrows land, to keep crossings few.
    sent: dict[str, int] = {}
    for (src, _), f in flows.items():
        sent[src] = sent.get(src, 0) + f["n"]
    sources = sorted(sent, key=lambda s: (min(e for (a, _), e in ends.items() if a == s), s))
    block = len(sources) * _LEFT_H + max(len(sources) - 1, 0) * _GAP
    y = _TOP + max((right_bottom - _TOP - block) / 2, 0)
    left_nodes: list[dict[str, Any]] = []
    starts: dict[tuple[str, str], float] = {}
    for src in sources:
        outs = sorted((e, dst) for (a, dst), e in ends.items() if a == src)
        for j, (_, dst) in enumerate(outs):
            starts[(src, dst)] = y + _LEFT_H / 2 + (j - (len(outs) - 1) / 2) * 8
        left_nodes.append({"x": _X_LEFT, "y": y, "w": _LEFT_W, "h": _LEFT_H, "label": src,
                           "rows": [{"text": f"{sent[src]:,} recording(s) in packages",
                                     "kind": "none", "y": y + 37}]})
        y += _LEFT_H + _GAP
    return left_nodes, starts, y


@functools.cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("simulator.judge", "templates"),
                      autoescape=select_autoescape(["html", "xml"], default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda n: f"{n:,}" if isinstance(n, int) else n
    env.filters["in_words"] = in_words
    return env


def render_html(result: RunResult) -> str:
    report = report_dict(result)
    samples = [dict(s, from_household=lk["from_household"],
                    to=_label(lk.get("to_household"), lk.get("to_account")))
               for lk in report["leaks"] for s in lk.get("samples", [])][:12]
    return _environment().get_template("report.html").render(
        r=report, flow=flow_picture(result.packages, result.all_leaks), samples=samples,
        leaked=sum(lk.recordings for lk in result.all_leaks))


def write_reports(result: RunResult, out_dir: Path) -> dict[str, Path]:
    """Write report.json, junit.xml and report.html into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "junit": out_dir / "junit.xml",
             "html": out_dir / "report.html"}
    paths["json"].write_text(report_json(result), encoding="utf-8")
    paths["junit"].write_bytes(junit_xml(result))
    paths["html"].write_text(render_html(result), encoding="utf-8")
    return paths


# -- the summary -------------------------------------------------------------------------
def _capped(lines: list[str], indent: str = "  ") -> list[str]:
    out = [indent + line for line in lines[:SUMMARY_LIST_CAP]]
    if len(lines) > SUMMARY_LIST_CAP:
        out.append(f"{indent}… and {len(lines) - SUMMARY_LIST_CAP} more (see report.html)")
    return out


def summary_text(result: RunResult) -> str:
    """One screen for the terminal: verdict, expectations, packages, leaks, Art. 33/34."""
    mark = {True: "[ok]  ", False: "[FAIL]", None: "[??]  "}
    held = sum(1 for e in result.expectations if e.passed)
    lines = [f"{result.verdict.upper()}  {result.scenario} (seed {result.seed})",
             f"expectations: {held} of {len(result.expectations)} held"]
    lines += _capped([f"{mark[e.passed]} {e.name}" + (f": {e.detail}" if e.detail else "")
                      for e in result.expectations])
    if result.packages:
        lines.append("packages:")
        lines += _capped([_package_line(p) for p in result.packages])
    if result.all_leaks:
        lines.append("leaks:")
        lines += _capped([
            f"{lk.from_household} -> {_label(lk.to_household, lk.to_account)}: "
            f"{lk.recordings:,} recordings of {lk.data_subjects} people, "
            f"{lk.first_recorded_at or '?'} .. {lk.last_recorded_at or '?'}, "
            f"link {'redeemed' if lk.link_redeemed else 'not redeemed'}"
            for lk in result.all_leaks])
        note = breach_notification(result.all_leaks, result.aware_at,
                                   measures_taken=result.measures_taken)
        lines.append(f"Art. 33: notify the supervisory authority by {note['deadline'] or '(awareness time unknown)'}"
                     f"; Art. 34 notice to data subjects: "
                     f"{'REQUIRED' if note['art34']['required'] else 'not required'}")
    else:
        lines.append("leaks: none")
    if result.lost:
        lines.append("lost:")
        lines += _capped([f"{lk.recordings:,} recordings of {lk.of_household} destroyed by "
                          f"{lk.by_household}'s erasure {lk.by_request}"
                          for lk in result.lost])
    return "\n".join(lines)


def _package_line(p: PackageAudit) -> str:
    made_for = f" (made for {p.made_for})" if p.made_for not in (None, p.subject_household) else ""
    foreign = ", ".join(f"{h} {n:,}" for h, n in sorted(p.foreign.items())) or "0"
    return (f"{p.request_id} for {_label(p.subject_household, p.subject_account)}{made_for}: "
            f"{p.files:,} files, own {p.own:,}, foreign {foreign}, "
            f"missing {p.missing:,}, corrupt {p.corrupt:,}")
