"""The invariants every run must hold, checked over the ledger, the downloaded packages, the
report's audits and the backend's public API.

Each checker takes a finished :class:`simulator.runner.Run` and returns ``(held, message)``;
the message names households by their scenario keys and holds no server-assigned id or wall
time, so a replay of the same scenario gives the same text. ``overheard run`` checks them
for an ``[[expect]] invariant = "..."`` (how a file in ``overheard explore``'s ``found/``
replays its failure); explore checks all of them after every generated run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from simulator.judge.audit import AuditError, PackageAudit, audit_package
from simulator.scenario.datadir import data_files

if TYPE_CHECKING:
    from simulator.scenario.runner import Run

Verdict = tuple[bool, str]
Checker = Callable[["Run"], Awaitable[Verdict]]

NAMES: tuple[str, ...] = ("no_foreign_data", "no_foreign_recipient", "complete", "erasure_total",
                          "no_collateral_loss", "acked_durable", "guard_alerts")
_MIN_NEEDLE = 12
"""Transcripts shorter than this are too common to prove anything by their presence."""


def _owners(run: Run) -> dict[str, str]:
    """request_id → the household that filed it."""
    return {r.request_id: key for key, home in run.homes.items()
            for rs in home.requests.values() for r in rs}


def _erasures(run: Run) -> dict[str, str]:
    """household → when it filed its last erasure request."""
    return {key: home.requests["erasure"][-1].filed_at for key, home in run.homes.items()
            if home.requests.get("erasure")}


def _held(problems: list[str], ok_text: str) -> Verdict:
    if not problems:
        return True, ok_text
    return False, "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more"
                                             if len(problems) > 3 else "")


def _profile_of(p: PackageAudit) -> str | None:
    """The household whose profile package ``p`` holds when it is not the recipient's. The
    run's audits already know every account the run registered (``Run.accounts``), so
    ``"?"`` is an account the run never made."""
    return "an unknown account" if p.foreign_profile == "?" else p.foreign_profile


async def no_foreign_data(run: Run) -> Verdict:
    problems = []
    for p in run.audits:
        foreign = {h: n for h, n in sorted(p.foreign.items()) if n}
        if foreign:
            whose = ", ".join(f"{n} of {h}" for h, n in foreign.items())
            problems.append(f"{p.file} downloaded by {p.subject_household} holds "
                            f"recordings of others ({whose})")
        if profile := _profile_of(p):
            problems.append(f"{p.file} downloaded by {p.subject_household} holds "
                            f"{profile}'s profile")
    return _held(problems, f"{len(run.audits)} package(s), none holds anyone else's data")


async def no_foreign_recipient(run: Run) -> Verdict:
    owners = _owners(run)
    problems = []
    for key, items in sorted(run.downloads.items()):
        for item in items:
            owner = owners.get(item.request_id or "", "an unknown requester")
            if owner != key:
                problems.append(f"{key} downloaded the package of {owner}'s request")
    for p in run.audits:
        others = {h for h, n in p.foreign.items() if n} | set(filter(None, [_profile_of(p)]))
        if p.own == 0 and others:
            problems.append(f"{p.file} went to {p.subject_household} but holds only "
                            f"{', '.join(sorted(others))}'s data")
    return _held(problems, "every package went to its own subject")


async def complete(run: Run) -> Verdict:
    owners, erased = _owners(run), _erasures(run)
    filed = {r.request_id: r.filed_at for home in run.homes.values()
             for r in home.requests.get("access", [])}
    problems = []
    for key, items in sorted(run.downloads.items()):
        if key in erased:
            continue  # what the household erased is rightly absent
        home = run.homes[key]
        for item in items:
            rid = item.request_id
            if rid is None or owners.get(rid) != key or rid not in filed:
                continue
            try:
                pa = audit_package(item.path, run.ledger, subject_household=key,
                                   subject_account=home.account_id, as_of=filed[rid],
                                   accounts=run.accounts())
            except AuditError as exc:
                problems.append(f"{key}'s package cannot be read: {exc}")
                continue
            if any(pa.foreign.values()) or not pa.own:
                continue  # not this household's package at all: the other invariants say so
            if pa.missing:
                problems.append(f"{key}'s package lacks {pa.missing} of its own recordings")
    return _held(problems, "every package holds all of its subject's recordings")


def _backend_files(run: Run) -> list[tuple[str, bytes]]:
    data = run.handle.data_dir
    if data is None:
        return []
    return [(f.name, f.text) for f in data_files(data, audio=False)]


async def erasure_total(run: Run) -> Verdict:
    erased = _erasures(run)
    if not erased or run.handle.data_dir is None:
        return True, "no verified erasure to check" if not erased else "remote backend: not inspected"
    said_by: dict[str, set[str]] = {}
    for e in run.ledger:
        said_by.setdefault(e.transcript, set()).add(e.household)
    files = _backend_files(run)
    problems = []
    for key, filed_at in sorted(erased.items()):
        home = run.homes[key]
        r = home.requests["erasure"][-1]
        status = await run.client.get_privacy_request(r.request_id, token=r.token)
        if status.status != "complete":
            continue
        needles = {e.transcript.encode() for e in run.ledger
                   if e.household == key and e.outcome == "ok" and e.recorded_at <= filed_at
                   and len(e.transcript) >= _MIN_NEEDLE and said_by[e.transcript] == {key}}
        left = {name: n for name, blob in files
                if (n := sum(1 for needle in needles if needle in blob))}
        if left:
            problems.append(f"after {key}'s completed erasure, {sum(left.values())} of its "
                            f"transcripts remain in {', '.join(sorted(left))}")
    return _held(problems, "every completed erasure left nothing of its subject")


async def no_collateral_loss(run: Run) -> Verdict:
    # The runner's ``lost`` section (report.json's): each erasure's destruction of
    # recordings the ledger says are another household's, attributed to that erasure.
    if not run.erasures:
        return True, "no erasure request, nothing destroyed by one"
    by: dict[tuple[str, str], int] = {}
    for lk in run.lost:
        key = (lk.of_household, lk.by_household)
        by[key] = by.get(key, 0) + lk.recordings
    problems = [f"{n} recording(s) of {of} destroyed by {who}'s erasure"
                for (of, who), n in sorted(by.items())]
    return _held(problems, "no erasure destroyed anyone else's recordings")


async def acked_durable(run: Run) -> Verdict:
    """Every acknowledged recording is still listed by some account, unless its own
    household erased it after it was recorded (a crash of the backend included)."""
    stored: set[str] = set()
    for home in run.homes.values():
        if home.user_token:
            stored.update(r.recording_id for r in await run.client.all_my_recordings(home.user_token))
    erased = _erasures(run)
    by: dict[str, int] = {}
    for e in run.ledger:
        if (e.outcome == "ok" and e.recording_id and e.recording_id not in stored
                and not (e.household in erased and e.recorded_at <= erased[e.household])):
            by[e.household] = by.get(e.household, 0) + 1
    problems = [f"{n} acknowledged recording(s) of {h} are gone" for h, n in sorted(by.items())]
    return _held(problems, "every acknowledged recording is still stored")


def _blocked(run: Run) -> list[tuple[str, str]]:
    """(guard, what) for every attempt the run saw a guard block."""
    out: list[tuple[str, str]] = []
    owners, erased = _owners(run), _erasures(run)
    if "delivery.bound_links" in run.s.guards:
        for x in run.redemptions:
            owner = owners.get(x.request_id or "")
            refused = x.result[:3] in ("403", "404", "410")
            # A link whose owner erased his data since is gone with it: no guard refused it.
            gone = (x.result[:3] in ("404", "410") and owner is not None and owner in erased
                    and erased[owner] <= x.at)
            if refused and not gone and owner not in (None, x.by):
                out.append(("delivery.bound_links", f"{x.by}'s download of {owner}'s link"))
    if "ops.four_eyes" in run.s.guards:
        out += [("ops.four_eyes", t.what) for t in run.timeline
                if t.step == "operator" and "held for a second operator" in t.what]
    return out


async def guard_alerts(run: Run) -> Verdict:
    alerts = await run.client.alerts()
    raised = {a.guard for a in alerts}
    problems = [f"{guard} blocked {what} without an alert" for guard, what in _blocked(run)
                if guard not in raised]
    return _held(problems, f"{len(alerts)} alert(s); every blocked attempt left one")


CHECKERS: dict[str, Checker] = {
    "no_foreign_data": no_foreign_data, "no_foreign_recipient": no_foreign_recipient,
    "complete": complete, "erasure_total": erasure_total,
    "no_collateral_loss": no_collateral_loss, "acked_durable": acked_durable,
    "guard_alerts": guard_alerts,
}
assert tuple(CHECKERS) == NAMES


async def check_invariant(name: str, run: Run) -> tuple[bool | None, str]:
    """``(held, message)`` of one invariant over a finished run."""
    checker = CHECKERS.get(name)
    if checker is None:
        return None, f"unknown invariant {name!r}"
    return await checker(run)
