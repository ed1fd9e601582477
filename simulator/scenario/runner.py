"""``overheard run``: play a scenario against a backend and judge the outcome.

The run composes three separate values, as a Jepsen test does: the workload (the world's
traffic and the requesters' steps), the faults and guards (switched on the backend), and
the checker (the auditor, which reads only the downloaded packages and the ledger). The
ledger is the one link between what happened and what is judged.

Run folder: ``report.json``, ``report.html``, ``junit.xml``, ``ledger.jsonl``,
``packages/*.zip`` (what each requester downloaded) and ``backend-data/`` (the embedded
backend's data dir). Exit 0: every expectation held; 1: one failed; 2: could not decide.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import multiprocessing
import re
import shutil
import sys
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from backend import Config
from simulator.fleet.access import (
    file_request,
    link_in_mailbox,
    link_message,
    settle,
    verify,
)
from simulator.fleet.api import QueueItem, RequestStatus
from simulator.fleet.client import ApiError, Client, ClientError
from simulator.fleet.crashable import CrashableBackend, CrashSafeClient
from simulator.fleet.device import DeviceOptions
from simulator.fleet.embedded import BackendHandle, embedded_backend
from simulator.fleet.errors import FleetError
from simulator.fleet.homes import DeviceAccount, Filed, Home, register_device, register_home
from simulator.fleet.ledger import DownloadRecord, LedgerEntry, write_ledger
from simulator.fleet.progress import ProgressMode, resolve_mode
from simulator.fleet.streaming import stream_utterances
from simulator.judge import identify
from simulator.judge.audit import (
    AuditError,
    Leak,
    PackageAudit,
    audit_package,
    file_sha256,
    wav_pcm_sha256,
)
from simulator.judge.identify import Identifiability
from simulator.judge.report import (
    Expectation,
    GuardAlert,
    Loss,
    Redemption,
    RunResult,
    TimelineEntry,
    write_reports,
)
from simulator.judge.report import (
    Verdict as RunVerdict,
)
from simulator.scenario.datadir import data_files
from simulator.scenario.errors import SeedsError
from simulator.scenario.interactive import Announce, hand_to_console, steps_taken
from simulator.scenario.model import (
    AccessRequest,
    AdvanceClock,
    AlertExpect,
    Crash,
    Download,
    ErasureRequest,
    Expect,
    ForHousehold,
    LeakExpect,
    LinkExpect,
    LostExpect,
    NoLeakExpect,
    Operator,
    RedeemedExpect,
    RegisterDevice,
    Revoke,
    Scenario,
    StatusExpect,
    Traffic,
    TransferDevice,
    WaitRequests,
    load_scenario,
    parse_duration,
)
from simulator.world.audio import VoiceEngine
from simulator.world.households import Device, Utterance, World

log = logging.getLogger("overheard.run")

EXIT_PASS, EXIT_FAIL, EXIT_UNKNOWN = 0, 1, 2
PATIENT = DeviceOptions(max_attempts=60, backoff_max=0.25)
"""Devices of a run whose backend may crash: they keep reconnecting while it restarts."""


class RunAborted(Exception):
    """The run could not decide: the backend misbehaved or a step could not be carried out."""


@dataclasses.dataclass(frozen=True)
class Erasure:
    """An erasure request, with what the accounts held just before it was filed."""

    request_id: str
    household: str
    held: dict[str, str]
    """recording_id -> the household whose account listed it."""


@dataclasses.dataclass(frozen=True)
class Downloaded:
    """A package a household downloaded into the run folder."""

    request_id: str | None
    path: Path
    at: str
    made_for: str | None
    """The household whose request the package answers (None: not known)."""


@dataclasses.dataclass
class Progress:
    """One line per step on stderr, in simulated-time order; ``mode`` also decides how the
    traffic's utterance counter is shown (:mod:`simulator.fleet.progress`)."""

    mode: ProgressMode = "plain"

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def step(self, text: str) -> None:
        if self.enabled:
            print(f"  {text}", file=sys.stderr, flush=True)


class Run:
    """State of one scenario run."""

    def __init__(self, scenario: Scenario, out: Path, client: Client, handle: BackendHandle,
                 progress: Progress, interactive: Announce | None = None,
                 voice: VoiceEngine = "speech") -> None:
        self.s = scenario
        self.interactive = interactive
        """When set, a person works the queue at the console instead of the scripted operator."""
        self.out = out
        self.client = client
        self.handle = handle
        self.progress = progress
        specs = [h.spec() for h in scenario.household]
        self.world = World.build(scenario.seed, scenario.world.locale, specs,
                                 background=scenario.world.background_households,
                                 start=scenario.world.start, voice=voice)
        self.homes: dict[str, Home] = {}
        for h in self.world.households:
            self.homes[h.key] = Home(h)
        self.now = self.world.start
        self.ledger: list[LedgerEntry] = []
        self.timeline: list[TimelineEntry] = []
        self.redemptions: list[Redemption] = []
        self.audits: list[PackageAudit] = []
        self.downloads: dict[str, list[Downloaded]] = {}
        self.download_records: list[DownloadRecord] = []
        self.erasures: list[Erasure] = []
        """Erasure requests in filing order."""
        self.lost: list[Loss] = []
        self.operators: dict[str, str] = {}
        self.operator_names: dict[str, str] = {}
        """operator_id → the name the scenario gave the operator."""
        self.audit_seen = 0
        """The last audit-log entry read for the operators' acts."""
        self.aware_at: str | None = None
        self.measures: list[str] = []
        self.alerts: list[GuardAlert] = []

    def note(self, step: str, what: str) -> None:
        self.timeline.append(TimelineEntry(_iso(self.now), step, what))
        self.progress.step(f"[{_iso(self.now)}] {step}: {what}")

    async def advance(self, seconds: float, why: str, *, noted: bool = True) -> None:
        if seconds <= 0:
            return
        await self.client.advance_clock(seconds)
        self.now += timedelta(seconds=seconds)
        if noted:
            self.note("advance_clock", f"{_human_duration(seconds)} ({why})")

    # -- setup --------------------------------------------------------------------------
    async def setup(self) -> None:
        for home in self.homes.values():
            try:
                # Scenario accounts are made without a postal address.
                await register_home(self.client, home, with_address=False)
            except ApiError as exc:
                if exc.code != "email_in_use":
                    raise
                raise RunAborted(
                    f"the backend already has an account for household {home.key} "
                    f"({home.household.holder.email}): a scenario needs a fresh backend, "
                    "or another --seed") from None
        self.note("setup", f"{len(self.homes)} households, "
                           f"{sum(len(h.devices) for h in self.homes.values())} devices registered")
        await self._switch_faults()

    def _resolve(self, value: Any) -> Any:
        """Household keys in fault parameters become account ids (the backend knows no keys)."""
        if isinstance(value, str) and value in self.homes:
            return self.homes[value].account_id
        if isinstance(value, str) and value.startswith("email:") and value[6:] in self.homes:
            return self.homes[value[6:]].household.holder.email
        if isinstance(value, list):
            return [self._resolve(v) for v in value]
        return value

    async def _switch_faults(self) -> None:
        if self.s.faults:
            await self.client.put_faults([
                {"name": n, "enabled": True, "params": {k: self._resolve(v) for k, v in p.items()}}
                for n, p in self.s.faults.items()])
        if self.s.guards:
            await self.client.put_guards([
                {"name": n, "enabled": True, "params": {k: self._resolve(v) for k, v in p.items()}}
                for n, p in self.s.guards.items()])
        on = [*self.s.faults, *self.s.guards]
        if on:
            self.note("switches", "on: " + ", ".join(on))

    # -- steps ------------------------------------------------------------------------
    async def play(self) -> None:
        for i, st in enumerate(self.s.step):
            if st.at is not None:
                await self.advance(parse_duration(st.at), f"before step {i}")
            handler = getattr(self, f"step_{st.do}")
            await handler(st)
        await self._crashes_settled()

    async def step_traffic(self, st: Traffic) -> None:
        keys = st.households or [k for k, h in self.homes.items() if h.devices]
        utterances: list[tuple[Utterance, DeviceAccount]] = []
        for key in keys:
            home = self.homes[key]
            for u in home.household.traffic(self.now, st.days):
                dev = home.devices.get(u.device_serial)
                if dev is not None:
                    utterances.append((u, dev))
        utterances.sort(key=lambda p: (p[0].recorded_at, p[0].utterance_id))
        start = self.now
        # Announced at its start, so the log stays in simulated-time order (the traffic
        # covers the clock advance below and is not printed after it).
        self.progress.step(f"[{_iso(start)}] traffic: {len(utterances)} utterances from "
                           f"{len(keys)} households over {st.days:g} days")
        # The backend's clock moves to the end of the period: recordings arrive as they happen.
        await self.advance(st.days * 86400, f"{st.days:g} days of use", noted=False)
        t0 = time.perf_counter()
        patient = {"options": PATIENT} if self.handle.crashable else {}
        entries = await stream_utterances(self.handle.url, utterances,
                                          progress=self.progress.mode, **patient)
        self.ledger.extend(entries)
        ok = sum(1 for e in entries if e.outcome == "ok")
        self.timeline.append(TimelineEntry(
            _iso(start), "traffic",
            f"{len(entries)} utterances from {len(keys)} households over {st.days:g} days "
            f"({ok} stored)"))
        # Wall time goes to the progress line only: the report must not depend on it.
        self.progress.step(f"[{_iso(start)}] traffic: {self.timeline[-1].what} "
                           f"in {time.perf_counter() - t0:.1f} s")
        if ok != len(entries):
            bad = len(entries) - ok
            self.note("traffic", f"{bad} utterances not acknowledged (ledger outcome fail/info)")

    async def step_register_device(self, st: RegisterDevice) -> None:
        home = self.homes[st.household]
        n = len(home.household.devices) + 1
        serial = st.serial or f"{home.household.devices[0].serial[:-3] if home.household.devices else 'G0'}X{n:02d}"
        if st.serial and st.serial in self.homes:
            owner = self.homes[st.serial].household
            if not owner.devices:
                raise RunAborted(f"register_device: serial = {st.serial!r} names a household "
                                 f"that has no device (now) whose serial could be reused")
            serial = owner.devices[0].serial
        dev = Device(serial=serial, model=st.model, room=st.room)
        home.household = home.household.with_devices((*home.household.devices, dev))
        try:
            await register_device(self.client, home, dev)
            self.note("register_device", f"{st.household} registers {st.model} serial {serial}")
        except ApiError as exc:
            home.household = home.household.with_devices(home.household.devices[:-1])
            self.note("register_device", f"{st.household}: refused ({exc.code}: {exc.message})")

    async def step_transfer_device(self, st: TransferDevice) -> None:
        seller, buyer = self.homes[st.household], self.homes[st.to]
        if st.device >= len(seller.household.devices):
            raise RunAborted(f"{st.household} has no device #{st.device}")
        dev = seller.household.devices[st.device]
        seller.household = seller.household.with_devices(
            [d for d in seller.household.devices if d != dev])
        seller.devices.pop(dev.serial, None)
        buyer.household = buyer.household.with_devices((*buyer.household.devices, dev))
        try:
            await register_device(self.client, buyer, dev, transfer=True)
        except ApiError as exc:
            raise RunAborted(f"transfer of {dev.serial} refused: {exc.code}: {exc.message}") from exc
        self.note("transfer_device", f"{st.household} sells {dev.model} ({dev.serial}) to {st.to}")

    async def _file(self, kind: str, st: AccessRequest | ErasureRequest) -> None:
        keys = [st.by] if isinstance(st.by, str) else st.by
        for key in keys:
            home = self.homes[key]
            via = st.via
            email_of = getattr(st, "email_of", None)
            typed = getattr(st, "email", None)
            contact = getattr(st, "contact", None)
            email = typed or (self.homes[email_of].household.holder.email if email_of else None)
            if email is not None:
                via = "email"
            held = await self._stored_by_account() if kind == "erasure" else {}
            # An impersonator types the victim's name along with the victim's address.
            named = self.homes[email_of].household if email_of else home.household
            try:
                filed = await file_request(self.client, home, kind, via=via, email=email,
                                           name=named.holder.name, contact=contact)
            except ApiError as exc:
                if exc.code != "duplicate_request":
                    raise
                self._still_open(key, kind, exc)
                continue
            rid = filed.request_id
            home.requests.setdefault(kind, []).append(
                dataclasses.replace(filed, filed_at=_iso(self.now)))
            if kind == "erasure":
                self.erasures.append(Erasure(rid, key, held))
            whose = (f" naming {filed.email}" if via == "email"
                     else f" with contact address {contact}" if contact else "")
            self.note(f"{kind}_request", f"{key} asks for {kind}{whose} → {rid} ({filed.status})")
            if filed.status == "identity_unverified":
                await self._verify(home, filed)

    def _still_open(self, key: str, kind: str, exc: ApiError) -> None:
        """409 ``duplicate_request``: the household's earlier request of this kind is still
        open (a guard sent it back to review, say), so the backend refuses a second one and
        the household keeps following the open one."""
        body = exc.body if isinstance(exc.body, dict) else {}
        self.note(f"{kind}_request", f"{key}'s earlier {kind} request "
                                     f"{body.get('request_id') or ''} is still open: a new one "
                                     f"is refused (duplicate_request)")

    async def _verify(self, home: Home, filed: Filed) -> None:
        """Answer the code only if it reached this household's own mailbox."""
        own = home.household.holder.email
        try:
            res = await verify(self.client, home, filed)
        except ApiError as exc:
            if exc.code == "wrong_code":
                # The code of another request of his (an impersonator never sees the one
                # sent to the victim): refused, the request stays unverified.
                self.note("verify", f"{home.key} enters a code from {own} → refused (wrong_code)")
                return
            if exc.code != "duplicate_request":
                raise
            # The backend canceled the new request: the household follows its open one.
            rs = home.requests[filed.kind]
            rs[:] = [r for r in rs if r.request_id != filed.request_id]
            self._still_open(home.key, filed.kind, exc)
            return
        if res is None:
            self.note("verify", f"{home.key}: no code reached {own}; "
                                f"cannot verify {filed.request_id}")
            return
        self.note("verify", f"{home.key} enters the code from {own} → {res.status}")

    async def step_access_request(self, st: AccessRequest) -> None:
        await self._file("access", st)

    async def step_erasure_request(self, st: ErasureRequest) -> None:
        await self._file("erasure", st)

    async def _operator_token(self, name: str) -> str:
        if name not in self.operators:
            made = await self.client.create_operator(name)
            self.operators[name] = made.operator_token
            self.operator_names[made.operator_id] = name
        return self.operators[name]

    async def _note_assembly(self) -> None:
        """Put what the operators did by hand, as the backend's audit log records it, on the
        timeline: whose voice history went into which request's package."""
        owner = {r.request_id: home.key for home, _kind, r in self._requests()}
        while True:
            page = (await self.client.audit(after=self.audit_seen, limit=500)).entries
            for entry in page:
                self.audit_seen = entry.seq
                if entry.action != "ops.package.assembled":
                    continue
                actor = entry.actor.removeprefix("operator:")
                name = self.operator_names.get(actor, actor)
                into = str(entry.object_id)
                other = str(entry.detail.get("voice_history_of", "?"))
                self.note("operator", f"{name} put the voice history of {other} "
                                      f"({owner.get(other, '?')}) into {into} "
                                      f"({owner.get(into, '?')})")
            if len(page) < 500:
                return

    async def step_operator(self, st: Operator) -> None:
        if self.interactive is not None:
            await self._by_hand(st)
            return
        token = await self._operator_token(st.name)
        queue = await self.client.ops_requests(token, status="pending")
        if not queue:
            self.note("operator", f"{st.name}: queue empty")
            return
        for rid in [q.request_id for q in queue]:
            # Read the request again: approving an earlier one may have changed it (a swap
            # at approval re-assigns both), and the operator acts on what is there now.
            item = await self._pending_item(token, rid)
            whose = self._filer_of(rid)
            if item is None:
                self.note("operator", f"{st.name}: {rid} ({whose}'s request) is no longer pending")
                continue
            if st.action == "deny":
                await self.client.ops_deny(token, rid, st.reason or "suspected_fraud")
                self.note("operator", f"{st.name} denies {rid} ({st.reason})")
                continue
            if item.assigned_by is None:
                target = (item.subject_account_id or item.requester.account_id
                          or item.matched_account_id)
                if target is None:
                    hits = await self.client.ops_accounts(
                        token, item.requester.name or item.requester.email)
                    target = hits[0].account_id if hits else None
                if target is None:
                    await self.client.ops_deny(token, rid, "no_match")
                    self.note("operator", f"{st.name} finds no account for {rid}: denied no_match")
                    continue
                assigned = await self.client.ops_assign(token, rid, account_id=target)
                self.note("operator", f"{st.name} assigns "
                                      f"{self._household_of(assigned.subject_account_id)}"
                                      f"'s account to {rid} ({whose}'s request)")
            res = await self.client.ops_approve(token, rid)
            used = self._household_of(res.subject_account_id or item.subject_account_id)
            self.note("operator", f"{st.name} approves {rid} ({whose}'s request) → "
                                  f"{res.status}: it answers with {used}'s data"
                                  + ("" if used == whose else f", not {whose}'s"))
            if res.needs_second_operator:
                if st.second is None:
                    self.note("operator", f"{rid} held for a second operator (none scheduled)")
                    continue
                await self._second_review(st.second, rid)

    async def _by_hand(self, st: Operator) -> None:
        """``--interactive``: a person works the queue in the console; their steps go into
        the timeline from the backend's audit log."""
        if self.handle.app is None or self.interactive is None:
            raise RunAborted("--interactive needs the embedded backend (without --backend)")
        ended, operators = await hand_to_console(self.handle.app, self.handle.url, self.client,
                                                 st.name, self.interactive)
        for line in await steps_taken(self.client, operators):
            for key, home in self.homes.items():  # name accounts as the report does
                if home.account_id:
                    line = line.replace(home.account_id, f"{key}'s account")
            self.note("operator", line)
        self.note("operator", "the person at the console pressed Done" if ended == "done"
                  else "the person at the console left no request in review")

    async def _second_review(self, name: str, rid: str) -> None:
        """A second operator checks a held assignment against the verified requester: a
        mismatch is re-assigned to the account that holds the verified address, then approved."""
        token = await self._operator_token(name)
        item = await self._pending_item(token, rid)
        if item is None:
            self.note("operator", f"{name}: {rid} is no longer pending")
            return
        rightful = item.requester.account_id or item.matched_account_id
        if rightful and item.subject_account_id != rightful:
            await self.client.ops_assign(token, rid, account_id=rightful)
            self.note("operator", f"{name} rejects the assignment of "
                                  f"{self._household_of(item.subject_account_id)}'s account "
                                  f"and assigns {self._household_of(rightful)}'s")
        res = await self.client.ops_approve(token, rid)
        self.note("operator", f"{name} approves {rid} → {res.status}")

    async def _pending_item(self, token: str, rid: str) -> QueueItem | None:
        queue = await self.client.ops_requests(token, status="pending")
        return next((q for q in queue if q.request_id == rid), None)

    def _filer_of(self, request_id: str | None) -> str:
        """The household that filed ``request_id`` (as the runner knows it)."""
        for home, _kind, r in self._requests():
            if r.request_id == request_id:
                return home.key
        return str(request_id)

    def _household_of(self, account_id: str | None) -> str:
        for key, home in self.homes.items():
            if home.account_id == account_id:
                return key
        return str(account_id)

    def _requests(self) -> list[tuple[Home, str, Filed]]:
        return [(home, kind, r) for home in self.homes.values()
                for kind, rs in home.requests.items() for r in rs]

    async def step_wait(self, st: WaitRequests) -> None:
        settled = []
        for home, _kind, r in self._requests():
            status = await self._await_request(r)
            settled.append(f"{home.key}={status.status}")
        await self._note_assembly()
        self.note("wait", ", ".join(settled) or "no requests")

    async def _await_request(self, r: Filed) -> RequestStatus:
        """Long-poll until the request is terminal or waiting for a person."""
        st = await settle(self.client, r.request_id, r.token, polls=600, wait=10)
        if st is None:
            raise RunAborted(f"request {r.request_id} did not settle")
        return st

    async def step_download(self, st: Download) -> None:
        downloader = self.homes[st.by]
        source = self.homes[st.link_of or st.by]
        if "access" not in source.requests and st.link_of is None:
            # He asked for nothing, but a link may have reached his mailbox (misaddressed).
            await self._download_from_mailbox(downloader)
            return
        if "access" not in source.requests:
            raise RunAborted(f"{source.key} filed no access request to download")
        r = source.requests["access"][-1]
        request_id: str | None = r.request_id
        # The rightful requester shows the token he filed with; anyone else his own.
        own_token = r.token if downloader is source and not st.guess_next else None
        status = await self.client.get_privacy_request(r.request_id, token=r.token)
        url = status.download_url
        if url is None and st.link_of:
            url = await link_in_mailbox(self.client, source.household.holder.email)
        if url is None:
            mail = await link_message(self.client, downloader.household.holder.email)
            url = mail.url if mail else None
            if mail and mail.request_id != r.request_id:
                # A link from the downloader's own mailbox answers the request it names,
                # not the one he meant to fetch: a refusal of it is not a refusal of that.
                request_id, own_token = mail.request_id, None
        if url is None:
            self.note("download", f"{st.by}: no link ({status.status})")
            self.redemptions.append(Redemption(_iso(self.now), request_id, st.by,
                                               f"no link ({status.status})"))
            return
        targets = [url]
        if st.guess_next:
            targets = _neighbours(url)
        for target in targets:
            await self._fetch(downloader, request_id, own_token, target, guessed=st.guess_next)

    async def _download_from_mailbox(self, downloader: Home) -> None:
        """Open the newest link in the household's own mailbox, whoever's request it answers."""
        own = downloader.household.holder.email
        message = await link_message(self.client, own)
        if message is None or message.url is None:
            self.note("download", f"{downloader.key}: no link in {own}")
            self.redemptions.append(Redemption(_iso(self.now), None, downloader.key,
                                               "no link in the mailbox"))
            return
        self.note("download", f"{downloader.key} finds a link in {own} "
                              f"(request {message.request_id})")
        await self._fetch(downloader, message.request_id, None, message.url, guessed=False)

    async def _fetch(self, downloader: Home, request_id: str | None, own_token: str | None,
                     url: str, guessed: bool) -> None:
        """Download ``url`` as ``downloader``. The rightful requester shows what they
        asked with (``own_token``: the account's token when signed in, the request's own
        token on the email path); anyone else has only their own account's token."""
        n = len(self.downloads.get(downloader.key, [])) + 1
        dest = self.out / "packages" / f"{downloader.key}-{n}.zip"
        dest.parent.mkdir(parents=True, exist_ok=True)
        token = own_token or downloader.user_token
        try:
            served = await self.client.fetch_package(url, dest, token=token)
        except ApiError as exc:
            what = f"{exc.status} {exc.code}"
            self.redemptions.append(Redemption(_iso(self.now), request_id, downloader.key, what))
            self.note("download", f"{downloader.key} tries {'a guessed' if guessed else 'the'} link → {what}")
            return
        # Credited to the package the link actually served, whoever's request it answers.
        rid = served or request_id
        made_for = self._filer_of(rid) if rid else None
        size = dest.stat().st_size
        self.download_records.append(DownloadRecord(
            at=_iso(self.now), household=downloader.key, account_id=downloader.account_id,
            request_id=rid, made_for=made_for, sha256=file_sha256(dest), bytes=size))
        self.downloads.setdefault(downloader.key, []).append(
            Downloaded(rid, dest, _iso(self.now), made_for))
        self.redemptions.append(Redemption(_iso(self.now), rid, downloader.key, "downloaded"))
        whose = "" if made_for == downloader.key else f", {made_for}'s package"
        self.note("download", f"{downloader.key} downloads {dest.name} ({size / 1e6:.1f} MB"
                              f"{whose})")

    async def step_crash(self, st: Crash) -> None:
        crashable = self.handle.crashable
        if crashable is None:
            raise RunAborted("a crash step needs the backend the runner starts itself")
        try:
            await crashable.arm(st.point, st.nth)
        except FleetError as exc:
            raise RunAborted(f"crash at {st.point}: {exc}") from None
        self.note("crash", f"the backend is to be killed at pass {st.nth} of {st.point} "
                           "and restarted on the same data dir")

    async def _crashes_settled(self) -> None:
        """After the last step: every armed crash happened (the timeline says where), or the
        run cannot decide what the scenario meant to show."""
        crashable = self.handle.crashable
        if crashable is None:
            return
        try:
            missed = await crashable.settle()
        except FleetError as exc:
            raise RunAborted(str(exc)) from None
        for crash in crashable.crashes:
            # Noted here, not when it happened: an export job's pass races the runner's
            # next call, and the timeline must not depend on that.
            after = ("its devices reconnected and resent what was not acknowledged"
                     if crash.point.startswith("ingest.") else "the interrupted export was requeued")
            self.note("crash", f"killed (SIGKILL) at pass {crash.nth} of {crash.point}; "
                               f"restarted on the same data dir, {after}")
        if missed is not None:
            raise RunAborted(f"the crash at pass {missed.nth} of {missed.point} never happened: "
                             "no step after it passed the point that often (traffic passes "
                             "the ingest points, an access request's export the export points)")

    async def step_advance_clock(self, st: AdvanceClock) -> None:
        await self.advance(parse_duration(st.by), "scenario")

    async def step_revoke(self, st: Revoke) -> None:
        if st.after is not None:
            await self.advance(parse_duration(st.after), "until the complaint")
        token = await self._operator_token("Operator A")
        keys = [st.link_of] if st.link_of else list(self.homes)
        for key in keys:
            for r in self.homes[key].requests.get("access", []):
                try:
                    await self.client.ops_revoke(token, r.request_id)
                except ApiError as exc:
                    self.note("revoke", f"link of {key}: {exc.code}")
                    continue
                self.aware_at = self.aware_at or _iso(self.now)
                self.measures.append(f"download link of {key}'s request revoked at {_iso(self.now)}")
                self.note("revoke", f"operator revokes the link of {key}'s request {r.request_id}")

    async def _stored_by_account(self) -> dict[str, str]:
        """recording_id -> the household whose account lists it now (its voice history)."""
        out: dict[str, str] = {}
        for key, home in self.homes.items():
            if home.user_token:
                async for rec in self.client.iter_my_recordings(home.user_token):
                    out[rec.recording_id] = key
        return out

    async def judge_losses(self) -> None:
        """Recordings an erasure destroyed that were not the erasing household's: a breach
        of integrity and availability (Art. 4(12)), by the true owners the ledger names."""
        if not self.erasures:
            return
        now = await self._stored_by_account()
        owner = {e.recording_id: e for e in self.ledger if e.outcome == "ok" and e.recording_id}
        claimed: set[str] = set()
        for er in self.erasures:
            gone = sorted(rid for rid, holder in er.held.items()
                          if holder == er.household and rid not in now and rid not in claimed)
            claimed.update(gone)
            by_owner: dict[str, list[LedgerEntry]] = {}
            for rid in gone:
                entry = owner.get(rid)
                if entry is not None and entry.household != er.household:
                    by_owner.setdefault(entry.household, []).append(entry)
            for household, entries in sorted(by_owner.items()):
                times = sorted(e.recorded_at for e in entries)
                self.lost.append(Loss(
                    of_household=household, of_account=entries[0].account_id,
                    recordings=len(entries), data_subjects=len({e.speaker for e in entries}),
                    first_recorded_at=times[0], last_recorded_at=times[-1],
                    by_request=er.request_id, by_household=er.household,
                    by_account=self.homes[er.household].account_id))
        for lk in self.lost:
            self.note("lost", f"{lk.recordings} recordings of {lk.of_household} destroyed "
                              f"by {lk.by_household}'s erasure {lk.by_request}")

    # -- judging ------------------------------------------------------------------------
    async def audit(self) -> None:
        ok_at = self.now
        for key, items in sorted(self.downloads.items()):
            home = self.homes[key]
            for item in items:
                try:
                    pa = audit_package(item.path, self.ledger, subject_household=key,
                                       subject_account=home.account_id, link_redeemed=True,
                                       as_of=_iso(ok_at), made_for=item.made_for,
                                       accounts=self.accounts())
                except AuditError as exc:
                    raise RunAborted(f"cannot audit {item.path.name}: {exc}") from exc
                for lk in pa.leaks:
                    lk.identifiability = self._identifiability(pa, lk.from_household)
                    self._extract_samples(item.path, lk)
                pa.file = f"packages/{item.path.name}"
                pa.downloaded_at = item.at
                self.audits.append(pa)
        await self.judge_losses()
        if (any(p.leaks for p in self.audits) or self.lost) and self.aware_at is None:
            self.aware_at = _iso(self.now)

    def _extract_samples(self, zip_path: Path, leak: Leak) -> None:
        """Copy the leak's sampled WAVs out of the downloaded zip into ``samples/`` so that
        report.html can play them (the auditor has vetted the members; names are ours)."""
        folder = self.out / "samples"
        with zipfile.ZipFile(zip_path) as zf:
            for n, sample in enumerate(leak.samples, start=1):
                name = re.sub(r"[^A-Za-z0-9_.-]", "_",
                              f"{leak.request_id}-{leak.from_household}-{n}") + ".wav"
                folder.mkdir(exist_ok=True)
                (folder / name).write_bytes(zf.read(sample.path))
                sample.audio = f"samples/{name}"

    def accounts(self) -> dict[str, str]:
        """Account id → household, as registered: whose profile a package holds even when
        that household recorded nothing."""
        return {h.account_id: key for key, h in self.homes.items() if h.account_id}

    def _identifiability(self, pa: PackageAudit, household: str) -> Identifiability:
        """What the leaked transcripts reveal of ``household``, held against the world."""
        home = self.homes.get(household)
        tag = (home.household if home else self.world.households[0]).phrasebook.tag
        said = identify.leaked_transcripts(pa.verdicts, self.ledger, household)
        return identify.identifiability(said, tag, self.world)

    async def expectations(self) -> list[Expectation]:
        self.alerts = [GuardAlert(a.at, a.guard, a.request_id, a.summary)
                       for a in await self.client.alerts()]
        leaks = [leak for p in self.audits for leak in p.leaks]
        out = []
        for ex in self.s.expect:
            try:
                passed, detail = await self._check(ex, leaks, self.alerts)
            except (ClientError, KeyError) as exc:
                passed, detail = None, f"could not decide: {exc}"
            out.append(Expectation(ex.describe(), passed, detail))
        return out

    async def _check(self, ex: Expect, leaks: list[Leak], alerts: list[GuardAlert]) -> Verdict:
        checker = CHECKERS.get(ex.kind)
        if checker is None:
            return None, f"unknown expectation {ex.kind}"
        return await checker(self, getattr(ex, ex.kind), Evidence(leaks, alerts))


Verdict = tuple[bool | None, str]
"""An expectation's outcome (``None``: cannot be decided here) and what was found."""


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What the checkers read besides the run: the leaks and the guards' alerts."""

    leaks: list[Leak]
    alerts: list[GuardAlert]


Checker = Callable[["Run", Any, Evidence], Awaitable[Verdict]]
"""A checker takes the value of its kind's key (each checker names that value's type)."""


def _counted(n: int, exact: int | None, at_least: int | None, ok: bool) -> bool:
    """``ok`` narrowed by an exact count and a lower bound, each when given."""
    if exact is not None:
        ok = ok and n == exact
    if at_least is not None:
        ok = ok and n >= at_least
    return ok


async def check_leak(run: Run, v: LeakExpect, ev: Evidence) -> Verdict:
    found = [lk for lk in ev.leaks if lk.from_household == v.from_ and lk.to_household == v.to]
    n = sum(lk.recordings for lk in found)
    subjects = max((lk.data_subjects for lk in found), default=0)
    ok = _counted(n, v.recordings, v.min_recordings, bool(found))
    if v.data_subjects is not None:
        ok = ok and subjects == v.data_subjects
    return ok, f"found {n} recordings of {subjects} data subjects from {v.from_} to {v.to}"


async def check_no_leak(run: Run, v: bool | NoLeakExpect, ev: Evidence) -> Verdict:
    sel = ev.leaks
    if isinstance(v, bool):
        if not v:
            return bool(ev.leaks), f"{len(ev.leaks)} leaks"
    else:
        sel = [lk for lk in ev.leaks if (v.to is None or lk.to_household == v.to)
               and (v.from_ is None or lk.from_household == v.from_)]
    desc = "; ".join(f"{lk.recordings} from {lk.from_household} to {lk.to_household}"
                     for lk in sel)
    return not sel, desc or "no foreign recording in any downloaded package"


async def check_complete(run: Run, v: ForHousehold, ev: Evidence) -> Verdict:
    pkgs = [p for p in run.audits if p.subject_household == v.for_
            and p.made_for in (None, v.for_)]
    if not pkgs:
        return False, f"{v.for_} downloaded no package"
    p = pkgs[-1]
    ok = (p.missing == 0 and not p.foreign and not p.foreign_profile
          and p.corrupt == 0 and p.unattributable == 0)
    return ok, (f"{p.own} own, {p.missing} missing, {sum(p.foreign.values())} foreign, "
                f"{p.corrupt} corrupt")


async def check_link(run: Run, v: LinkExpect, ev: Evidence) -> Verdict:
    r = run.homes[v.for_].requests["access"][-1]
    st = await run.client.get_privacy_request(r.request_id, token=r.token)
    state = st.link_state_now
    return state == v.state, f"link state {state}"


async def check_link_redeemed(run: Run, v: RedeemedExpect, ev: Evidence) -> Verdict:
    got = [x for x in run.redemptions if x.by == v.by and x.result == "downloaded"]
    return bool(got) == v.redeemed, f"{len(got)} successful download(s) by {v.by}"


async def check_alert(run: Run, v: AlertExpect, ev: Evidence) -> Verdict:
    hits = [a for a in ev.alerts if a.guard == v.guard]
    ok = bool(hits) if v.count is None else len(hits) == v.count
    return ok, f"{len(hits)} alert(s) from {v.guard}" + (
        f": {hits[0].summary}" if hits else "")


async def check_no_alert(run: Run, v: bool, ev: Evidence) -> Verdict:
    return (not ev.alerts) == v, f"{len(ev.alerts)} alert(s)"


def _leftovers(run: Run, v: str, *, expect_left: bool) -> Verdict:
    if run.handle.data_dir is None:
        return None, "cannot inspect a remote backend's files"
    found = find_leftovers(run.handle.data_dir, run.ledger, v)
    shared = (f"; {found.shared_phrases} phrase(s) other households say too were "
              "also found (not counted)" if found.shared_phrases else "")
    if found.files:
        return expect_left, ("still there: " if expect_left
                             else "left behind: ") + found.describe() + shared
    return not expect_left, (f"none of {v}'s {found.looked_for} recording ids, audio "
                             f"hashes or own transcripts in the backend's files{shared}")


async def check_erased(run: Run, v: str, ev: Evidence) -> Verdict:
    return _leftovers(run, v, expect_left=False)


async def check_remains(run: Run, v: str, ev: Evidence) -> Verdict:
    return _leftovers(run, v, expect_left=True)


async def check_request(run: Run, v: StatusExpect, ev: Evidence) -> Verdict:
    reqs = [r for rs in run.homes[v.for_].requests.values() for r in rs]
    if not reqs:
        return False, f"{v.for_} filed no request"
    st = await run.client.get_privacy_request(reqs[-1].request_id, token=reqs[-1].token)
    ok = st.status == v.status and (v.reason is None or st.reason == v.reason)
    return ok, f"status {st.status}, reason {st.reason}"


async def check_lost(run: Run, v: LostExpect, ev: Evidence) -> Verdict:
    found = [lk for lk in run.lost if lk.of_household == v.of
             and (v.by is None or lk.by_household == v.by)]
    n = sum(lk.recordings for lk in found)
    ok = _counted(n, v.recordings, v.min_recordings, n > 0 or v.recordings is not None
                  or v.min_recordings is not None)
    by = f" by {v.by}'s erasure" if v.by else ""
    return ok, f"{n} recordings of {v.of} destroyed{by}"


async def check_invariant(run: Run, v: str, ev: Evidence) -> Verdict:
    # Imported here: the invariants read this module's Run (no import cycle at load).
    from simulator.scenario.invariants import check_invariant as check

    return await check(v, run)


async def check_art34(run: Run, v: bool, ev: Evidence) -> Verdict:
    owed = any(lk.link_redeemed for lk in ev.leaks)
    return owed == v, f"Art. 34 notice {'owed' if owed else 'not owed'}"


CHECKERS: dict[str, Checker] = {
    "leak": check_leak, "no_leak": check_no_leak, "complete": check_complete,
    "link": check_link, "link_redeemed": check_link_redeemed, "alert": check_alert,
    "no_alert": check_no_alert, "erased": check_erased, "remains": check_remains,
    "request": check_request, "lost": check_lost, "art34": check_art34,
    "invariant": check_invariant,
}
"""One checker per expectation kind: what it passes on and what it reports finding."""


@dataclasses.dataclass
class Leftovers:
    """What of a household the backend's files still hold (a forensic check of erasure)."""

    files: dict[str, Counter[str]]
    """file -> counts of ``recording ids``, ``audio`` and ``transcripts`` found in it."""
    looked_for: int
    shared_phrases: int
    """Transcripts of the household that other households said too, found somewhere:
    everyday phrases ("Alexa, stop") prove nothing about whose data remains."""

    def describe(self) -> str:
        return ", ".join(f"{name} ({', '.join(f'{n} {what}' for what, n in sorted(c.items()))})"
                         for name, c in self.files.items())


def find_leftovers(data: Path, ledger: list[LedgerEntry], key: str) -> Leftovers:
    """Search every file under ``data`` (zips opened, WAVs hashed) for what belongs to the
    household ``key`` alone: its recording ids, the PCM hashes of its audio, and the
    transcripts no other household said."""
    mine = [e for e in ledger if e.household == key and e.outcome == "ok"]
    said_by_others = {e.transcript for e in ledger if e.household != key}
    ids = {e.recording_id.encode() for e in mine if e.recording_id}
    hashes = {e.pcm_sha256 for e in mine}
    own_text = {e.transcript.encode() for e in mine
                if e.transcript and e.transcript not in said_by_others}
    shared_text = {e.transcript.encode() for e in mine if e.transcript in said_by_others}
    files: dict[str, Counter[str]] = {}
    shared_found: set[bytes] = set()
    for f in data_files(data):
        found: Counter[str] = Counter()
        found["recording ids"] = sum(1 for needle in ids if needle in f.text)
        found["transcripts"] = sum(1 for needle in own_text if needle in f.text)
        found["audio"] = sum(1 for wav in f.wavs if wav_pcm_sha256(wav)[0] in hashes)
        shared_found |= {needle for needle in shared_text if needle in f.text}
        found = +found
        if found:
            files[f.name] = found
    return Leftovers(files, len(ids) + len(hashes) + len(own_text), len(shared_found))


def _neighbours(url: str) -> list[str]:
    """Links a curious holder would try: the numbers around his own (enumeration)."""
    m = re.search(r"(\d+)$", url)
    if not m:
        return [url[:-1] + ("A" if url[-1] != "A" else "B")]
    n = int(m.group(1))
    head = url[: m.start()]
    return [f"{head}{k}" for k in (n - 1, n + 1) if k > 0]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _human_duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 3600 == 0:
        return f"{seconds / 86400:g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


@asynccontextmanager
async def _backend(scenario: Scenario, out: Path, url: str | None,
                   admin_token: str | None) -> AsyncIterator[BackendHandle]:
    crash = any(isinstance(st, Crash) for st in scenario.step)
    if url:
        if crash:
            raise RunAborted(f"{scenario.name} has a crash step: it needs the backend the runner "
                             f"starts (and can kill) itself, not --backend {url}")
        if not admin_token:
            raise RunAborted("--backend needs --admin-token or $OVERHEARD_ADMIN_TOKEN")
        yield BackendHandle(url.rstrip("/"), admin_token)
        return
    data = out / "backend-data"
    if data.exists():
        shutil.rmtree(data)
    config = scenario.backend.apply(Config(
        data_dir=data, admin_token=f"adm_run_{scenario.seed}_embedded", id_seed=scenario.seed,
        link_secret=hashlib.sha256(f"overheard-link-{scenario.seed}".encode()).digest(),
        clock_start=scenario.world.start, clock_frozen=True,
    ))
    if crash:
        async with _crashable(config) as handle:
            yield handle
        return
    async with embedded_backend(config) as handle:
        yield handle


@asynccontextmanager
async def _crashable(config: Config) -> AsyncIterator[BackendHandle]:
    """The backend in a child process that a crash step can kill (a backend in this loop
    cannot be crashed honestly: see :mod:`simulator.fleet.crashable`)."""
    backend = CrashableBackend(config)
    try:
        handle = await backend.start()
    except FleetError as exc:
        raise RunAborted(str(exc)) from None
    try:
        yield handle
    finally:
        await backend.stop()


def _client(handle: BackendHandle) -> Client:
    if handle.crashable is not None:
        return CrashSafeClient(handle.crashable, timeout=600)
    return Client(handle.url, admin_token=handle.admin_token, timeout=600)


async def apply_backend_settings(client: Client, scenario: Scenario) -> None:
    """Give a served backend the scenario's ``[backend]`` table through the admin API.

    The run-time keys are always sent (a scenario that says nothing means the defaults,
    whatever an earlier run left); ``export_workers`` only when the file sets it, since a
    served backend's pool is fixed at start. Anything the backend cannot apply stops the
    run (exit 2) naming the setting.
    """
    table = scenario.backend
    settings: dict[str, Any] = {"manual_review": list(table.manual_review),
                                "link_ttl": int(parse_duration(table.link_ttl))}
    if "export_workers" in table.model_fields_set:
        settings["export_workers"] = table.export_workers
    try:
        await client.put_config(settings)
    except ApiError as exc:
        if exc.status == 404:
            raise RunAborted(
                f"the backend at {client.base_url} cannot apply [backend] settings "
                f"({', '.join(settings)}): it has no /v1/admin/config") from None
        raise RunAborted(f"the backend refused [backend] {exc.message}") from None


async def run_scenario(scenario: Scenario, out: Path, *, backend_url: str | None = None,
                       admin_token: str | None = None,
                       progress: bool | ProgressMode = True,
                       interactive: Announce | None = None,
                       voice: VoiceEngine = "speech", reports: bool = True) -> RunResult:
    """Play ``scenario``, write the run folder to ``out`` and return the result.

    ``progress``: a mode of :mod:`simulator.fleet.progress`, ``True`` for the default one (by
    whether stderr is a terminal) or ``False`` for none. ``voice = "fast"`` speaks with the
    letter splice instead of eSpeak NG: the same transcripts and the same verdicts, for runs
    nobody listens to (a seed sweep in CI)."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("packages", "samples"):
        if (out / stale).exists():
            shutil.rmtree(out / stale)
    started = datetime.now(UTC)
    prog = Progress(resolve_mode(progress))
    async with _backend(scenario, out, backend_url, admin_token) as handle, \
            _client(handle) as client:
        if backend_url:
            await apply_backend_settings(client, scenario)
        run = Run(scenario, out, client, handle, prog, interactive, voice)
        try:
            await run.setup()
            await run.play()
            await run.audit()
            expectations = await run.expectations()
        except (ClientError, RunAborted) as exc:
            expectations = [Expectation("run", None, f"could not decide: {exc}")]
            run.note("aborted", str(exc))
    write_ledger(out / "ledger.jsonl", run.ledger, run.download_records)
    verdict: RunVerdict
    if any(e.passed is None for e in expectations):
        verdict = "unknown"
    else:
        verdict = "pass" if all(e.passed for e in expectations) else "fail"
    result = RunResult(
        scenario=scenario.name, seed=scenario.seed, verdict=verdict,
        expectations=expectations, packages=run.audits, timeline=run.timeline,
        link_redemptions=run.redemptions, alerts=run.alerts, aware_at=run.aware_at,
        lost=run.lost,
        measures_taken=run.measures,
        description=scenario.description,
        started_at=started.isoformat(timespec="milliseconds"),
        finished_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        run_info={"backend": backend_url or "embedded", "out": str(out)},
    )
    if reports:  # in-process generated runs need only the returned result
        write_reports(result, out)
    return result


# -- a scenario across seeds --------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SeedResult:
    """One seed of a sweep: its verdict and, if it did not pass, the first reason why."""

    seed: int
    verdict: str
    held: int
    expectations: int
    seconds: float
    first_problem: str = ""

    def line(self) -> str:
        text = (f"seed {self.seed:>6}  {self.verdict.upper():<7}  {self.held}/{self.expectations} "
                f"held  {self.seconds:6.1f} s")
        return text + (f"  {self.first_problem}" if self.first_problem else "")


def parse_seeds(text: str) -> range:
    """``"1-50"`` -> seeds 1 to 50; ``"7"`` -> seed 7."""
    m = re.fullmatch(r"\s*(\d{1,18})\s*(?:-\s*(\d{1,18})\s*)?", text)
    if not m:
        raise SeedsError(f"{text!r}: a range like 1-50, or one seed")
    lo = int(m.group(1))
    hi = int(m.group(2) or lo)
    if hi < lo:
        raise SeedsError(f"{text!r}: the range ends before it starts")
    if hi - lo >= 100_000:
        raise SeedsError(f"{text!r}: at most 100,000 seeds at once")
    return range(lo, hi + 1)


SWEEP_KEEPS_ALWAYS = ("report.json", "report.html", "junit.xml", "ledger.jsonl")
"""What a sweep keeps of a seed that passed; a seed that did not pass keeps its whole run
folder (the zips and the backend's data dir are evidence, and a full-size run is ~1 GB)."""


def run_one_seed(path: Path, seed: int, out: Path, voice: VoiceEngine = "speech") -> SeedResult:
    """Play ``path`` with ``seed`` into ``out`` (in this process); a worker of a sweep."""
    logging.disable(logging.WARNING)  # a sweep prints one line per seed, not the backend's log
    scenario = load_scenario(path, seed=seed)
    t0 = time.perf_counter()
    try:
        result = asyncio.run(run_scenario(scenario, out, progress=False, voice=voice))
    except (RunAborted, ClientError, OSError) as exc:
        return SeedResult(seed, "unknown", 0, len(scenario.expect),
                          time.perf_counter() - t0, f"could not decide: {exc}")
    if result.verdict == "pass":
        _drop_evidence(out)
    held = sum(1 for e in result.expectations if e.passed)
    bad = next((e for e in result.expectations if not e.passed), None)
    problem = f"{bad.name}: {bad.detail}" if bad is not None else ""
    return SeedResult(seed, result.verdict, held, len(result.expectations),
                      time.perf_counter() - t0, problem)


def _drop_evidence(out: Path) -> None:
    for entry in out.iterdir():
        if entry.name in SWEEP_KEEPS_ALWAYS:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def sweep(path: Path, seeds: range, out: Path, jobs: int = 1,
          on_result: Callable[[SeedResult], None] | None = None) -> list[SeedResult]:
    """Run one scenario over ``seeds`` into ``out/seed-N``; results in seed order."""
    return run_many([(path, seed, out / f"seed-{seed}") for seed in seeds], jobs, on_result)


def run_many(items: list[tuple[Path, int, Path]], jobs: int = 1,
             on_result: Callable[[SeedResult], None] | None = None,
             voice: VoiceEngine = "speech") -> list[SeedResult]:
    """Run each ``(scenario file, seed, run folder)``, ``jobs`` at a time: in this process
    when one, else in separate processes (each run embeds its own backend, and synthesis
    and zipping are CPU work). Results come back in the order of ``items``; ``on_result``
    sees them in that order too, each as soon as it and every one before it are done."""
    if jobs <= 1:
        results = []
        for item in items:
            results.append(run_one_seed(*item, voice))
            if on_result:
                on_result(results[-1])
        return results
    done: dict[int, SeedResult] = {}
    shown = 0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(run_one_seed, *item, voice): i for i, item in enumerate(items)}
        for fut in as_completed(futures):
            done[futures[fut]] = fut.result()
            while shown in done:
                if on_result:
                    on_result(done[shown])
                shown += 1
    return [done[i] for i in range(len(items))]


def sweep_summary(results: list[SeedResult]) -> str:
    passed = sum(1 for r in results if r.verdict == "pass")
    first = next((r.seed for r in results if r.verdict != "pass"), None)
    return (f"{passed} of {len(results)} seeds passed"
            + (f"; first failing seed: {first}" if first is not None else ""))


def sweep_exit(results: list[SeedResult]) -> int:
    """1 if any seed failed; else 2 if any could not decide; else 0."""
    verdicts = {r.verdict for r in results}
    if "fail" in verdicts:
        return EXIT_FAIL
    return EXIT_UNKNOWN if verdicts - {"pass"} else EXIT_PASS
