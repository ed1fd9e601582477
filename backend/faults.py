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
    Two access requests are in the manual-review queue at once. When the operator approves
    them, the account assignments of the pair are swapped: each package is built from the
    other requester's data. This is the 2018 case: a German customer received ~1,700
    recordings of a stranger's household; the company called it "human error".
    """,
    between="two household keys or account ids whose requests get swapped (optional: first two in flight)",
)
_fault(
    "export.operator_wrong_account", "operator step",
    "account search by name; the operator picks a look-alike",
    "ops.four_eyes",
    """
    The operator resolves an email-path request by searching accounts by name and assigns
    the first hit, which is a different person with a similar name. Mirrors DSAR handling
    studies where staff matched requesters on name alone.
    """,
)
_fault(
    "export.device_history_join", "export query",
    "selects by devices now bound to the account: a resold device brings its previous owner's recordings",
    "export.ownership_check",
    """
    The export query selects recordings by ``device_id IN (devices now bound to the
    account)`` instead of by the recording's own account. A second-hand speaker re-registered
    to a buyer brings the seller's voice history into the buyer's package.
    """,
)
_fault(
    "export.shared_staging", "export job",
    "concurrent jobs share a staging dir keyed by date: packages mix",
    "export.ownership_check",
    """
    Export jobs stage WAV files in ``staging/<date>/`` instead of a per-job directory and
    zip whatever the directory holds; two jobs on the same day interleave and each package
    picks up the other's files. Reproduced deterministically: jobs wait for each other at a
    barrier before zipping.
    """,
)
_fault(
    "export.cache_key_collision", "export cache",
    "built packages cached by a key without the account",
    "export.ownership_check",
    """
    Built packages are cached under a key made of request kind and date only; a second
    access request the same day is served the first requester's cached package.
    """,
)
_fault(
    "ingest.stale_binding", "ingest",
    "device→account binding cached past a re-registration (resold device)",
    "binding.revoke_on_transfer",
    """
    Ingest caches device→account bindings and does not invalidate the entry when the serial
    is re-registered to another account, and the old device token keeps working: the
    buyer's speech lands in the seller's account.
    """,
)
_fault(
    "ingest.serial_collision", "ingest",
    "two devices share a serial; both bind to the first account",
    "binding.revoke_on_transfer",
    """
    Two physical devices carry the same serial (a factory duplicate). Registration looks
    up the binding by serial and reuses the first account's binding, so the second
    household's recordings are stored under the first household.
    """,
)
_fault(
    "delivery.unbound_link", "download",
    "sequential, non-expiring link tokens not bound to the requester",
    "delivery.bound_links",
    """
    Download links are sequential numbers without signature or expiry, not bound to the
    requester: anyone who guesses the neighbouring number downloads another person's
    package (an IDOR, as in many published data-export bugs).
    """,
)
_fault(
    "delivery.misaddressed_email", "outbox",
    "the link goes to a stale or wrong address",
    "identity.verified_channel",
    """
    The link email is sent to the address typed into the request form, not the address on
    file for the subject; a typo or a stale address delivers the link to a stranger.
    """,
    to="address the link is sent to (optional: the requester-supplied address)",
)
_fault(
    "identity.weak_verification", "intake",
    "a request naming an email is trusted without a code (impersonation)",
    "identity.verified_channel",
    """
    A request that names an email is treated as verified without a code sent to that
    address: whoever knows a victim's name and email obtains the victim's package. Mirrors
    the published DSAR-abuse studies (e.g. Di Martino et al. 2019; Pavur & Knerr 2019).
    """,
)
_fault(
    "erasure.partial", "erasure",
    "rows deleted, audio or staged packages left behind",
    "erasure.verify",
    """
    Erasure deletes the recording rows but leaves audio blobs and already-built packages
    (and their links) in place; the data remains retrievable after the controller reported
    it erased.
    """,
)

_guard(
    "export.ownership_check",
    "any package item whose owner is not the subject: quarantine, alert, request → pending",
    """
    Before a package is released, every item's stored owner is compared with the request's
    subject; any mismatch quarantines the package, raises an alert and sends the request
    back to ``pending`` for review.
    """,
)
_guard(
    "ops.four_eyes",
    "an assignment that differs from the requester's own account needs a second operator",
    """
    An operator assignment of an account other than the requester's own (or, for the email
    path, other than the account holding that email) is held until a second operator
    confirms it.
    """,
)
_guard(
    "binding.revoke_on_transfer",
    "re-registration revokes the old binding and tokens at once",
    """
    Re-registering a serial closes the previous binding, revokes the previous device token
    and drops cached bindings immediately; a serial already bound elsewhere is refused
    unless the transfer is explicit.
    """,
)
_guard(
    "delivery.bound_links",
    "links are HMAC-signed (SHA-256), ≥128-bit, bound to the requester, expire, single-use",
    """
    Download links carry ≥128 random bits signed with HMAC-SHA256, expire, are single-use
    and require the requester's own user token as well as the link.
    """,
)
_guard(
    "identity.verified_channel",
    "codes go only to the email on file; 6 digits, 10-minute TTL, 3 tries",
    """
    Verification codes and download links are sent only to the email on file for the
    subject account, never to an address typed into the form; codes are 6 digits, live 10
    minutes and allow 3 tries.
    """,
)
_guard(
    "erasure.verify",
    "erasure is checked: no row, blob or package of the subject remains",
    """
    After erasure, a check scans recordings, audio, packages, links and staging for the
    subject; anything left is deleted and reported as an alert before the request completes.
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
