"""An async HTTP client for the backend's API (as ``/openapi.json`` lists it): one method per route.

::

    ClientError                 anything that went wrong talking to the backend
    ├── ApiError                the backend answered 4xx/5xx: ``status``, ``code``, ``message``
    ├── BadReply                a 2xx answer that is not what the route promises
    └── Unreachable             no answer at all (refused, reset, timed out)

Errors are translated at one boundary (:meth:`Client.request`), so callers see the
backend's JSON error ``code`` rather than aiohttp's exceptions. The replies the simulator
acts on are parsed there too, once, into the models of :mod:`simulator.fleet.api`. Every method takes the
token it needs: admin methods default to the client's admin token; user, operator and
requester methods take theirs explicitly, because one scenario plays all of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from simulator.fleet.api import (
    AccountHit,
    Alert,
    AuditPage,
    Mail,
    NewOperator,
    QueueItem,
    Recording,
    RecordingPage,
    Reply,
    RequestStatus,
    Revoked,
)

R = TypeVar("R", bound=Reply)


class ClientError(Exception):
    """Talking to the backend failed."""


class ApiError(ClientError):
    """The backend answered with an error status and (usually) ``{"error", "message"}``."""

    def __init__(self, method: str, path: str, status: int, code: str, message: str,
                 body: Any = None) -> None:
        super().__init__(f"{method} {path} -> {status} {code}: {message}")
        self.method = method
        self.path = path
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class BadReply(ClientError):
    """The backend answered 2xx with something the route does not promise."""


class Unreachable(ClientError):
    """No HTTP answer: connection refused or reset, or a timeout."""


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


class Client:
    """One backend, one connection pool. Use ``async with Client(url, admin_token=...)``."""

    def __init__(self, base_url: str, admin_token: str | None = None, *,
                 session: aiohttp.ClientSession | None = None, timeout: float = 60.0,
                 limit: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = limit

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=self._limit))
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    def url(self, path: str) -> str:
        return self.base_url + path

    def ws_url(self, path: str) -> str:
        return "ws" + self.url(path).removeprefix("http")

    # -- the one boundary ----------------------------------------------------------
    def _auth(self, token: str | None, admin: bool) -> dict[str, str]:
        token = token if token is not None else (self.admin_token if admin else None)
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def request(self, method: str, path: str, *, raw: bool = False,
                      **kwargs: Any) -> Any:
        """Send one request; JSON (or bytes with ``raw``) on 2xx, :class:`ApiError` otherwise.

        ``path`` may also be an absolute URL (download links are given whole). Keyword
        arguments as :meth:`raw`.
        """
        status, data = await self._send(method, path, **kwargs)
        if raw:
            return data
        if status == 204 or not data:
            return None
        return json.loads(data)

    async def raw(self, method: str, path: str, *, token: str | None = None,
                  admin: bool = False, json_body: Any = None,
                  params: Mapping[str, Any] | None = None,
                  headers: Mapping[str, str] | None = None,
                  response_headers: dict[str, str] | None = None) -> bytes:
        """:meth:`request` for a route that answers bytes. A dict given as
        ``response_headers`` receives the response's headers."""
        return (await self._send(method, path, token=token, admin=admin, json_body=json_body,
                                 params=params, headers=headers,
                                 response_headers=response_headers))[1]

    async def _send(self, method: str, path: str, *, token: str | None = None,
                    admin: bool = False, json_body: Any = None,
                    params: Mapping[str, Any] | None = None,
                    headers: Mapping[str, str] | None = None,
                    response_headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        url = path if path.startswith(("http://", "https://")) else self.url(path)
        hdrs = {**self._auth(token, admin), **(headers or {})}
        query = {k: str(v).lower() if isinstance(v, bool) else str(v)
                 for k, v in (params or {}).items() if v is not None}
        try:
            async with self.session.request(method, url, json=json_body, params=query or None,
                                            headers=hdrs) as resp:
                data = await resp.read()
                if response_headers is not None:
                    response_headers.update(resp.headers)
                if resp.status >= 400:
                    raise _api_error(method, path, resp.status, data)
                return resp.status, data
        except aiohttp.ClientResponseError as exc:  # pragma: no cover - read() raises these rarely
            raise ApiError(method, path, exc.status, "http_error", exc.message) from None
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise Unreachable(f"{method} {_shown(path)}: {exc.__class__.__name__}: {exc}") from None

    async def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """:meth:`request` for a route that answers a JSON object."""
        out = await self.request(method, path, **kwargs)
        if not isinstance(out, dict):
            raise BadReply(f"{method} {_shown(path)}: expected a JSON object, got "
                           f"{type(out).__name__}")
        return out

    async def reply(self, model: type[R], method: str, path: str, **kwargs: Any) -> R:
        """:meth:`json` parsed into ``model``."""
        return _parse(model, await self.json(method, path, **kwargs), method, path)

    # -- meta ------------------------------------------------------------------------
    async def healthz(self) -> dict[str, Any]:
        return await self.json("GET", "/healthz")

    async def metrics(self) -> str:
        return (await self.raw("GET", "/metrics")).decode()

    async def openapi(self) -> dict[str, Any]:
        return await self.json("GET", "/openapi.json")

    # -- accounts and devices (admin) ------------------------------------------------
    async def create_account(self, name: str, email: str, locale: str,
                             address: str | None = None, **extra: Any) -> dict[str, Any]:
        """``{"account_id", "user_token"}``."""
        body = {"name": name, "email": email, "locale": locale, **extra}
        if address is not None:
            body["address"] = address
        return await self.json("POST", "/v1/accounts", admin=True, json_body=body)

    async def get_account(self, account_id: str) -> dict[str, Any]:
        return await self.json("GET", _path("v1", "accounts", account_id), admin=True)

    async def register_device(self, account_id: str, serial: str, model: str, room: str,
                              **extra: Any) -> dict[str, Any]:
        """``{"device_id", "device_token", ...}``; ``transfer=True`` moves a bound serial."""
        body = {"serial": serial, "model": model, "room": room, **extra}
        return await self.json("POST", _path("v1", "accounts", account_id, "devices"),
                               admin=True, json_body=body)

    async def bindings(self, account_id: str) -> dict[str, Any]:
        return await self.json("GET", _path("v1", "accounts", account_id, "bindings"),
                               admin=True)

    async def deregister_device(self, device_id: str) -> None:
        await self.request("DELETE", _path("v1", "devices", device_id), admin=True)

    async def create_operator(self, name: str) -> NewOperator:
        return await self.reply(NewOperator, "POST", "/v1/operators", admin=True,
                                json_body={"name": name})

    # -- faults, guards, clock, audit (admin) ----------------------------------------
    async def get_faults(self) -> dict[str, Any]:
        return await self.json("GET", "/v1/admin/faults", admin=True)

    async def put_faults(self, switches: list[dict[str, Any]] | Mapping[str, Any]) -> dict[str, Any]:
        """``switches``: ``[{"name", "enabled", "params"}]`` or ``{name: params|bool}``."""
        return await self.json("PUT", "/v1/admin/faults", admin=True,
                               json_body={"switches": _switches(switches)})

    async def get_guards(self) -> dict[str, Any]:
        return await self.json("GET", "/v1/admin/guards", admin=True)

    async def put_guards(self, switches: list[dict[str, Any]] | Mapping[str, Any]) -> dict[str, Any]:
        return await self.json("PUT", "/v1/admin/guards", admin=True,
                               json_body={"switches": _switches(switches)})

    async def get_config(self) -> dict[str, Any]:
        """The backend's run-time settings (``GET /v1/admin/config``)."""
        return await self.json("GET", "/v1/admin/config", admin=True)

    async def put_config(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Change run-time settings; the answer is all of them as they are now."""
        return await self.json("PUT", "/v1/admin/config", admin=True,
                               json_body=dict(settings))

    async def advance_clock(self, seconds: float) -> str:
        """Move the backend's clock forward; returns its new ``now``."""
        out = await self.request("POST", "/v1/admin/clock", admin=True,
                                 json_body={"advance_seconds": seconds})
        return str(out["now"])

    async def get_clock(self) -> str:
        return str((await self.request("GET", "/v1/admin/clock", admin=True))["now"])

    async def audit(self, after: int = 0, limit: int = 500, verify: bool = False) -> AuditPage:
        return await self.reply(AuditPage, "GET", "/v1/admin/audit", admin=True,
                                params={"after": after, "limit": limit,
                                        "verify": 1 if verify else None})

    async def alerts(self) -> list[Alert]:
        out = await self.json("GET", "/v1/admin/alerts", admin=True)
        return _parse_list(Alert, out, "alerts", "GET", "/v1/admin/alerts")

    async def outbox(self, to: str | None = None, after: int = 0,
                     limit: int | None = None) -> list[Mail]:
        """Simulated email the backend sent, oldest first."""
        out = await self.json("GET", "/v1/outbox", admin=True,
                              params={"to": to, "after": after or None, "limit": limit})
        return _parse_list(Mail, out, "messages", "GET", "/v1/outbox")

    # -- voice history (user) --------------------------------------------------------
    async def my_recordings(self, user_token: str, cursor: str | None = None,
                            limit: int | None = None) -> RecordingPage:
        """One page of the account's voice history."""
        return await self.reply(RecordingPage, "GET", "/v1/me/recordings", token=user_token,
                                params={"cursor": cursor, "limit": limit})

    async def iter_my_recordings(self, user_token: str,
                                 limit: int | None = None) -> AsyncIterator[Recording]:
        """Every recording of the account, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = await self.my_recordings(user_token, cursor, limit)
            for rec in page.recordings:
                yield rec
            cursor = page.next_cursor
            if not cursor:
                return

    async def all_my_recordings(self, user_token: str) -> list[Recording]:
        return [r async for r in self.iter_my_recordings(user_token)]

    async def recording_audio(self, user_token: str, recording_id: str) -> bytes:
        """The recording as a WAV file."""
        return await self.raw("GET", _path("v1", "me", "recordings", recording_id, "audio"),
                              token=user_token)

    async def delete_recording(self, user_token: str, recording_id: str) -> None:
        await self.request("DELETE", _path("v1", "me", "recordings", recording_id),
                           token=user_token)

    # -- privacy requests ------------------------------------------------------------
    async def privacy_request(self, kind: str, *, user_token: str | None = None,
                              email: str | None = None, **extra: Any) -> RequestStatus:
        """File an ``access`` or ``erasure`` request, signed in or by email (the email
        path's reply adds ``requester_token``)."""
        body: dict[str, Any] = {"kind": kind, **extra}
        if email is not None:
            body["email"] = email
        return await self.reply(RequestStatus, "POST", "/v1/privacy/requests", token=user_token,
                                json_body=body)

    async def verify_privacy_request(self, request_id: str, code: str,
                                     token: str | None = None) -> RequestStatus:
        return await self.reply(RequestStatus, "POST",
                                _path("v1", "privacy", "requests", request_id, "verify"),
                                token=token, json_body={"code": code})

    async def get_privacy_request(self, request_id: str, token: str | None = None,
                                  wait: float | None = None) -> RequestStatus:
        """Status (``download_url`` when complete); ``wait`` long-polls while it works."""
        return await self.reply(RequestStatus, "GET",
                                _path("v1", "privacy", "requests", request_id),
                                token=token, params={"wait": wait})

    async def download(self, url_or_token: str, token: str | None = None) -> bytes:
        """A package by its link (a full URL, a path, or the bare link token)."""
        if url_or_token.startswith(("http://", "https://", "/")):
            target = url_or_token
        else:
            target = _path("v1", "privacy", "downloads", url_or_token)
        return await self.raw("GET", target, token=token)

    async def download_to(self, url_or_token: str, dest: str | Path,
                          token: str | None = None) -> Path:
        await self.fetch_package(url_or_token, dest, token)
        return Path(dest)

    async def fetch_package(self, url_or_token: str, dest: str | Path,
                            token: str | None = None) -> str | None:
        """Save a package to ``dest``; returns the request id it answers, as the server's
        ``Content-Disposition`` names it (``overheard-<request_id>.zip``), or None."""
        if url_or_token.startswith(("http://", "https://", "/")):
            target = url_or_token
        else:
            target = _path("v1", "privacy", "downloads", url_or_token)
        headers: dict[str, str] = {}
        data = await self.raw("GET", target, token=token, response_headers=headers)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        m = re.search(r'filename="overheard-([A-Za-z0-9_-]+)\.zip"',
                      headers.get("Content-Disposition", ""))
        return m.group(1) if m else None

    # -- operator console ------------------------------------------------------------
    async def ops_requests(self, operator_token: str, **params: Any) -> list[QueueItem]:
        """The queue (``status=...`` and other filters as query parameters)."""
        out = await self.json("GET", "/v1/ops/requests", token=operator_token, params=params)
        return _parse_list(QueueItem, out, "requests", "GET", "/v1/ops/requests")

    async def ops_accounts(self, operator_token: str, q: str | None) -> list[AccountHit]:
        """Account search by name or email."""
        out = await self.json("GET", "/v1/ops/accounts", token=operator_token, params={"q": q})
        return _parse_list(AccountHit, out, "accounts", "GET", "/v1/ops/accounts")

    async def ops_action(self, operator_token: str, request_id: str, action: str,
                         body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``assign``, ``approve``, ``deny`` or ``revoke`` one request."""
        return await self.json("POST", _path("v1", "ops", "requests", request_id, action),
                               token=operator_token, json_body=dict(body or {}))

    async def _ops_status(self, operator_token: str, request_id: str, action: str,
                          body: Mapping[str, Any]) -> RequestStatus:
        out = await self.ops_action(operator_token, request_id, action, body)
        return _parse(RequestStatus, out, "POST", f"/v1/ops/requests/…/{action}")

    async def ops_assign(self, operator_token: str, request_id: str,
                         **body: Any) -> RequestStatus:
        return await self._ops_status(operator_token, request_id, "assign", body)

    async def ops_approve(self, operator_token: str, request_id: str,
                          **body: Any) -> RequestStatus:
        return await self._ops_status(operator_token, request_id, "approve", body)

    async def ops_deny(self, operator_token: str, request_id: str, reason: str,
                       **body: Any) -> RequestStatus:
        return await self._ops_status(operator_token, request_id, "deny",
                                      {"reason": reason, **body})

    async def ops_revoke(self, operator_token: str, request_id: str, **body: Any) -> Revoked:
        out = await self.ops_action(operator_token, request_id, "revoke", body)
        return _parse(Revoked, out, "POST", "/v1/ops/requests/…/revoke")


def _parse(model: type[R], data: dict[str, Any], method: str, path: str) -> R:
    """``data`` as ``model``; a reply that is not one is :class:`BadReply`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadReply(f"{method} {_shown(path)}: not a {model.__name__}: {exc}") from None


def _parse_list(model: type[R], data: dict[str, Any], key: str, method: str,
                path: str) -> list[R]:
    """The list under ``key`` of a reply, each item as ``model``."""
    items = data.get(key)
    if not isinstance(items, list):
        raise BadReply(f"{method} {_shown(path)}: no list {key!r} in the reply")
    return [_parse(model, item, method, path) for item in items]


def _switches(switches: list[dict[str, Any]] | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Accept the wire list or a scenario-style ``{name: params | bool}`` mapping."""
    if isinstance(switches, Mapping):
        out = []
        for name, value in switches.items():
            if isinstance(value, bool):
                out.append({"name": name, "enabled": value, "params": {}})
            else:
                out.append({"name": name, "enabled": True, "params": dict(value or {})})
        return out
    return list(switches)


def _shown(path: str) -> str:
    """A path fit for messages: download links carry a secret, so it is cut off."""
    cut = path.find("/v1/privacy/downloads/")
    return path if cut < 0 else path[:cut] + "/v1/privacy/downloads/…"


def _api_error(method: str, path: str, status: int, data: bytes) -> ApiError:
    shown = _shown(path)
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return ApiError(method, shown, status, str(body["error"]), str(body.get("message", "")),
                        body)
    text = data[:200].decode("utf-8", "replace")
    return ApiError(method, shown, status, "http_error", text or f"HTTP {status}", body)

