"""The backend's replies as the simulator reads them: parsed once, at the client.

Each model names only the fields the simulator uses and ignores the rest (the backend may
say more than a client needs, and adding a field there must not break a run). A reply
that lacks a required field fails in :meth:`simulator.fleet.client.Client.request`'s
caller with a :class:`pydantic.ValidationError` naming the field, rather than as a
``KeyError`` somewhere in the runner.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Reply(BaseModel):
    """A JSON object the backend answered with."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class NewOperator(Reply):
    """``POST /v1/operators``."""

    operator_id: str
    operator_token: str


class LinkView(Reply):
    """A download link as its requester sees it."""

    state: str | None = None
    """``active``, ``expired``, ``used`` or ``revoked``."""
    created_at: str | None = None
    expires_at: str | None = None
    """None: the link does not expire."""


class RequestStatus(Reply):
    """A privacy request as one reply describes it: filing, verifying, polling, or an
    operator's assign/approve/deny."""

    request_id: str
    status: str
    reason: str | None = None
    error: str | None = None
    """Why the backend gave up on it (status ``error``)."""
    requester_token: str | None = None
    """The email path's filing reply only: the token to follow the request with."""
    download_url: str | None = None
    link: LinkView | None = None
    link_state: str | None = None
    subject_account_id: str | None = None
    """Operator replies: whose account's data answers the request."""
    needs_second_operator: bool = False
    """Operator approval held by the ``ops.four_eyes`` guard."""

    @property
    def link_state_now(self) -> str | None:
        """The link's state, from the link view or the flat field, whichever is given."""
        return (self.link.state if self.link is not None else None) or self.link_state


class Requester(Reply):
    """Who filed a request, as the operator's queue shows them."""

    account_id: str | None = None
    name: str | None = None
    email: str | None = None


class QueueItem(Reply):
    """One request in the operators' queue."""

    request_id: str
    kind: str
    status: str
    requester: Requester
    matched_account_id: str | None = None
    """The account the verified address belongs to (None until the code is answered)."""
    subject_account_id: str | None = None
    assigned_by: str | None = None


class AccountHit(Reply):
    """One account found by the operators' search."""

    account_id: str


class Revoked(Reply):
    """``POST /v1/ops/requests/{id}/revoke``: the links it revoked."""

    request_id: str
    revoked: list[str] = Field(default_factory=list)


class Recording(Reply):
    """One recording of an account's voice history."""

    recording_id: str
    device_id: str
    recorded_at: str
    transcript: str


class RecordingPage(Reply):
    """``GET /v1/me/recordings``: one page, and where the next starts (None: the last)."""

    recordings: list[Recording]
    next_cursor: str | None = None


class AuditEntry(Reply):
    """One line of the backend's audit log."""

    seq: int
    at: str
    actor: str
    action: str
    object_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    """What the action records: its keys depend on the action (free-form JSON)."""


class AuditPage(Reply):
    """``GET /v1/admin/audit``: entries after a sequence number."""

    entries: list[AuditEntry]


class Alert(Reply):
    """What one of the backend's guards raised."""

    at: str
    guard: str
    summary: str
    request_id: str | None = None


class Mail(Reply):
    """One message of the simulated outbox."""

    to: str
    subject: str = ""
    body: str = ""
    request_id: str | None = None
    code: str | None = None
    """A verification code, when the message carries one."""
    url: str | None = None
    """A download link, when the message carries one."""
