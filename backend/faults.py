"""Named faults (misbehaviours, off by default) and guards (mitigations), with parameters.

A fault is switched on by a scenario (``[faults]``) or at run time (``PUT /v1/admin/faults``);
the code that misbehaves sits at the one place in the pipeline where the real bug would
live and asks ``board.on(name)``. A guard is asked the same way where it intervenes. Each
fault names the guard that stops it.

The catalogue below is the contract: names are stable; each entry's ``doc`` says what goes
wrong, where, and which real incident or study it mirrors.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from backend.errors import BadRequest


@dataclass(frozen=True)
class Spec:
    """One catalogue entry."""

    name: str
    kind: Literal["fault", "guard"]
    where: str
    summary: str
    doc: str
    counterpart: tuple[str, ...]
    """For a fault: the guard(s) that stop it. For a guard: the faults it stops."""
    params: dict[str, str] = field(default_factory=dict)
    """Parameter name -> what it means."""


FAULTS: dict[str, Spec] = {}
GUARDS: dict[str, Spec] = {}


def _fault(name: str, where: str, summary: str, guard: str, doc: str, **params: str) -> None:
    FAULTS[name] = Spec(name, "fault", where, summary, doc.strip(), (guard,), params)


def _guard(name: str, summary: str, doc: str, **params: str) -> None:
    stops = tuple(n for n, s in FAULTS.items() if name in s.counterpart)
    GUARDS[name] = Spec(name, "guard", "", summary, doc.strip(), stops, params)


_fault(
    "export.operator_swap", "operator step",
    "two requests in flight; the operator attaches B's data to A's package (2018)",
    "export.ownership_check",
    """
    Two access requests wait in the manual-review queue at once. Approving one of them
    (``backend/privacy/ops.py`` :func:`swap_in_flight`, called from the approve route)
    attaches the other pending requester's account to it and vice versa, and logs both
    assignments under the operator's id, as the real mistake would be logged. The export
    job then builds a faithful package of the wrong account. This is the 2018 Amazon case
    reported by c't: a German customer who owned no Echo received a link to ~1,700 WAV
    recordings and transcripts of a stranger couple's household, downloaded them, and the
    company called it "human error" and "an isolated case". Nothing in the package is
    corrupt, so only a check of stored owners against the requester catches it.
    """,
    between="two household keys or account ids whose requests get swapped (optional: first two in flight)",
)
_fault(
    "export.operator_voice_mixup", "package assembly",
    "two requests in flight; the operator puts one's voice history into the other's package (2018 as reported)",
    "export.ownership_check",
    """
    Two access requests are on the operator's desk at once and their packages are put
    together by hand. When the export job builds a package an operator approved
    (``backend/privacy/export.py`` :func:`operator_voice_mixup`), the voice-history part
    (recordings and ``voice/transcripts.csv``) is taken from the other request's account;
    the profile, the device list and the manifest's subject stay the requester's own, so
    the stranger is named nowhere in the package. The mistake is logged once per request
    (``ops.package.assembled``, actor the approving operator, naming the other request), and
    not repeated when the request comes back for review. This is the 2018 case as the press
    reported it: the requester got his own data request answered with his own data and
    about 1,700 voice recordings of a stranger among it ("parmi ses propres
    enregistrements"); journalists identified the man from what the recordings said.
    ``export.operator_swap`` is the cruder whole-account swap.
    """,
    into="household key or account id whose package receives the other's voice history (optional: any operator-approved package)",
    **{"from": "household key or account id whose voice history goes in (optional: the earliest other request on the desk)"},
)
_fault(
    "export.operator_wrong_account", "operator step",
    "account search by name; the operator picks a look-alike",
    "ops.four_eyes",
    """
    An email-path request (the web form) is resolved by name: ``backend/privacy/ops.py``
    :func:`operator_pick` searches accounts by the requester's surname and settles on the
    first hit that is not the holder of the verified address, a different customer with
    the same name, when the operator assigns or approves. The requester receives the
    namesake's voice history. Mirrors the identity-matching failures that the DSAR-handling
    studies describe, where staff matched requesters on name (and an address they gave)
    rather than on the account that proved control of the channel.
    """,
)
_fault(
    "export.device_history_join", "export query",
    "selects by devices now bound to the account: a resold device brings its previous owner's recordings",
    "export.ownership_check",
    """
    The export query (``backend/privacy/export.py`` :func:`export_where`) selects
    recordings by ``serial IN (devices now bound to the account)`` instead of by each
    recording's stored owner. Ingest is correct; but once a second-hand speaker is
    re-registered to a buyer, the buyer's package carries the seller's whole voice history
    from that serial. The join looks natural ("the customer's devices' recordings") and
    passes every test that never resells a device. Second-hand smart speakers are a known
    privacy hazard in their own right (Giese & Noubir, WiSec 2021, on used Echo Dots).
    """,
)
_fault(
    "export.shared_staging", "export job",
    "concurrent jobs share a staging dir keyed by date: packages mix",
    "export.ownership_check",
    """
    ``backend/privacy/export.py`` :func:`staging_dir_for` returns ``staging/<date>/``
    instead of a per-request directory; :func:`stage_shared` writes each recording there as
    ``<recording_id>.wav`` with a JSON sidecar, and :func:`iter_staged` zips whatever the
    directory holds, so two jobs of the same day each package the other's files too (with
    their true stored owners in the manifest). A race on a shared temporary resource
    (CWE-362, CWE-377). Reproduced by construction, not by luck: jobs meet at a
    :class:`StagingBarrier` after staging and again after zipping (``jobs`` parties, at most
    ``export_workers``), so each package is exactly the union of the batch on every run;
    ``wait_seconds`` only bounds how long a lone job waits.
    """,
    jobs="how many jobs of a day meet before zipping (default 2, at most export_workers)",
    wait_seconds="how long a job waits for the others before zipping alone (default 10)",
)
_fault(
    "export.cache_key_collision", "export cache",
    "built packages cached by a key without the account",
    "export.ownership_check",
    """
    Built packages are cached (``backend/privacy/export.py`` :class:`PackageCache`) under
    ``<kind>:<date>``, a key without the account: the first access package of the day is
    served to every later requester that day, who gets the first requester's recordings
    and none of their own. A cache key missing the user is how Steam's store served
    account pages, with other users' personal details, to the wrong people at Christmas
    2015 (CWE-524). Deterministic when the requests are answered one after the other.
    """,
)
_fault(
    "ingest.stale_binding", "ingest",
    "device→account binding cached past a re-registration (resold device)",
    "binding.revoke_on_transfer",
    """
    Re-registering a serial to a buyer closes the old binding row but leaves the seller's
    device row and token alive and the ingest cache untouched
    (``backend/ingest/bindings.py`` :func:`register` and :func:`apply_stale_cache`: the
    cache remembers the first account seen per serial). Everything the buyer's household
    says to the resold speaker lands in the seller's voice history, and in the seller's
    access package: a leak from the buyer to the seller that no export check sees as
    foreign, because the rows are stored under the seller.
    """,
)
_fault(
    "ingest.serial_collision", "ingest",
    "two devices share a serial; both bind to the first account",
    "binding.revoke_on_transfer",
    """
    Two physical devices carry the same serial (a factory duplicate). Registration
    (``backend/ingest/bindings.py`` :func:`register`) finds the serial bound and reuses the
    first account's binding for the new device row, so the second household's recordings
    are stored under, and exported to, the first household. Identity taken from a
    hardware identifier that is assumed unique, as with duplicate MAC addresses or serials
    in cheap device batches.
    """,
)
_fault(
    "delivery.unbound_link", "download",
    "sequential, non-expiring link tokens not bound to the requester",
    "delivery.bound_links",
    """
    Download links (``backend/privacy/delivery.py`` :func:`mint_link`) are the link's
    sequence number: unsigned, never expiring, not single-use and not bound to the
    requester. Anyone who tries the number next to his own downloads another person's
    package: an insecure direct object reference (CWE-639), the bug behind First American
    Financial's 2019 exposure of ~885 million documents by sequential ids in URLs.
    """,
)
_fault(
    "delivery.misaddressed_email", "outbox",
    "the link goes to a stale or wrong address",
    "identity.verified_channel",
    """
    The link email (``backend/privacy/delivery.py`` :func:`route_link`) goes to the
    contact address typed into the request form (or the ``to`` parameter: a stale address
    on file) instead of the address on file for the requester. A typo delivers a working
    link to whoever holds the typed address. Email to the wrong recipient is among the
    most reported kinds of personal-data breach in the UK ICO's data-security statistics.
    """,
    to="address the link is sent to (optional: the requester-supplied address)",
)
_fault(
    "identity.weak_verification", "intake",
    "a request naming an email is trusted without a code (impersonation)",
    "identity.verified_channel",
    """
    An emailed request (``backend/privacy/intake.py`` :func:`create_request` /
    :func:`_file_by_email`) is taken as verified because it names an address an account
    holds; no code is sent to that address. Whoever knows a victim's name and email files
    a request and downloads the victim's package with his own requester token. Mirrors the
    published DSAR-abuse studies: Di Martino et al., SOUPS 2019 (impersonated requests
    answered with the victims' data) and Pavur & Knerr, Black Hat USA 2019 ("GDPArrrrr").
    """,
)
_fault(
    "erasure.partial", "erasure",
    "rows deleted, audio or staged packages left behind",
    "erasure.verify",
    """
    Erasure (``backend/privacy/erasure.py`` :func:`delete_subject_data` with
    ``partial=True``) deletes the recording rows and their audio but not the access
    packages already built from them, nor their links: the zip stays in ``packages/``
    and an old link keeps serving it after the controller reported the data erased
    (Art. 17). Only a check that looks beyond the recordings table (packages, links, their
    files, staging) sees it; the run's ``remains`` / ``erased`` expectations search the
    backend's files, inside zips too, for the household's transcripts.
    """,
)

_guard(
    "export.ownership_check",
    "any package item (or profile) not the subject's, or any of the subject's recordings missing: quarantine, alert, request → pending",
    """
    Before a package is released (``backend/privacy/export.py`` :func:`_release`), every
    item's stored owner, and the account whose profile and device list the package holds,
    are compared with the requester's own account (the one they proved to hold, whatever an
    operator attached); and the package's recordings are compared with every recording
    stored under that account, read in the same snapshot as the package. Anything foreign,
    or any own recording missing (a query that selects by the devices now bound to the
    account leaves out what a sold speaker recorded for its seller): the zip is deleted (or
    its cache entry dropped), no link is minted, the request goes back to ``pending`` with
    the assignment reset to the requester's own account, and an alert carries the foreign
    recordings per account, how many own recordings were missing, the assigned account and
    the manifest digest. A short package is refused, not patched up: a second query path
    would hide the export bug, and a partial copy tells the requester that is all there is.
    """,
)
_guard(
    "ops.four_eyes",
    "an assignment that differs from the requester's own account needs a second operator",
    """
    At approval (``backend/privacy/ops.py`` :func:`four_eyes_hold`), a request whose
    assigned account differs from the requester's own (or, for the email path, from the
    account holding the verified address) is held (202, still ``pending``) and alerted
    with both accounts, until a second, different operator approves it.
    """,
)
_guard(
    "binding.revoke_on_transfer",
    "re-registration revokes the old binding and tokens at once",
    """
    Re-registering a serial (``backend/ingest/bindings.py`` :func:`register`, route in
    ``backend/accounts.py``) closes the previous binding, retires the previous device row,
    revokes its tokens and drops cached bindings right after the commit. A serial bound to
    another account moves only with an explicit ``"transfer": true``; otherwise 409
    ``serial_in_use`` and an alert naming the accounts. A transfer it carries out is alerted
    too: serial, from and to accounts, devices retired, tokens revoked, cache entries dropped.
    """,
)
_guard(
    "delivery.bound_links",
    "links are HMAC-signed (SHA-256), ≥128-bit, bound to the requester, expire, single-use",
    """
    Download links (``backend/privacy/delivery.py`` :func:`mint_link`) carry 144 random
    bits signed with HMAC-SHA256, expire, are single-use and need the requester's own token
    as well as the link. A probe (a forged or guessed token, a bare sequential number, a
    valid link without its requester's token) is refused like a missing link and alerted
    with the caller's account or address, never the token, once per caller and kind per hour.
    """,
)
_guard(
    "identity.verified_channel",
    "codes go only to the email on file; 6 digits, 10-minute TTL, 3 tries",
    """
    Verification codes and download links go only to the address on file for the account,
    never to an address typed into the form. In intake (``backend/privacy/intake.py``) an
    emailed request always waits for the code (6 digits, 10 minutes, 3 tries); if the
    intake would have skipped that check, the request is held for the code and alerted. In
    delivery (``backend/privacy/delivery.py`` :func:`route_link`) a link about to go to an
    address not on file goes to the address on file instead, alerted (no address in the
    alert, since alerts are copied into the append-only audit log).
    """,
)
_guard(
    "erasure.verify",
    "erasure is checked: no row, blob or package of the subject remains",
    """
    After the delete (``backend/privacy/erasure.py`` :func:`erase`), :func:`remaining`
    counts the subject's recordings, audio, packages holding their recordings, links and
    package files; anything left is deleted, the WAL checkpointed again, and an alert lists
    what was left behind before the request completes.
    """,
)


class FaultBoard:
    """Which faults and guards are on, with their parameters. Thread-safe."""

    def __init__(self, faults: dict[str, dict[str, Any]] | None = None,
                 guards: dict[str, dict[str, Any]] | None = None) -> None:
        self._lock = threading.Lock()
        self._on: dict[str, dict[str, Any]] = {}
        for name, params in (faults or {}).items():
            self.set(name, True, params, kind="fault")
        for name, params in (guards or {}).items():
            self.set(name, True, params, kind="guard")

    @staticmethod
    def spec(name: str, kind: str | None = None) -> Spec:
        table = {"fault": FAULTS, "guard": GUARDS}.get(kind or "", {**FAULTS, **GUARDS})
        if name not in table:
            known = ", ".join(sorted(table))
            raise BadRequest(f"unknown {kind or 'fault or guard'} {name!r}; known: {known}",
                             code="unknown_switch")
        return table[name]

    def set(self, name: str, enabled: bool, params: dict[str, Any] | None = None,
            kind: str | None = None) -> None:
        spec = self.spec(name, kind)
        params = dict(params or {})
        unknown = set(params) - set(spec.params)
        if unknown:
            raise BadRequest(
                f"{name} has no parameter(s) {sorted(unknown)}; it takes {sorted(spec.params) or 'none'}",
                code="unknown_parameter",
            )
        with self._lock:
            if enabled:
                self._on[name] = params
            else:
                self._on.pop(name, None)

    def on(self, name: str) -> bool:
        if name not in FAULTS and name not in GUARDS:
            raise KeyError(name)
        with self._lock:
            return name in self._on

    def params(self, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._on.get(name, {}))

    def snapshot(self, kind: str) -> list[dict[str, Any]]:
        table = FAULTS if kind == "fault" else GUARDS
        with self._lock:
            return [
                {
                    "name": s.name,
                    "enabled": s.name in self._on,
                    "params": copy.deepcopy(self._on.get(s.name, {})),
                    "summary": s.summary,
                    ("stopped_by" if kind == "fault" else "stops"): list(s.counterpart),
                }
                for s in table.values()
            ]
