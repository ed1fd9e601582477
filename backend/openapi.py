"""The OpenAPI 3.1 document, assembled from what each route module declares.

Modules call :func:`document` next to their handlers; request bodies are pydantic models,
so the schema in the spec is the schema the handler validates with. A test checks that
every route the app serves is documented and nothing documented is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    roles: tuple[str, ...]
    """Who may call: admin, operator, user, device, requester, link, anyone."""
    body: type[BaseModel] | None = None
    responses: dict[int, str] = field(default_factory=dict)
    response_schema: dict[str, Any] | None = None
    query: tuple[tuple[Any, ...], ...] = ()
    """(name, JSON type, required[, extra schema keywords]) per query parameter; the extras
    (``minimum``, ``maximum``, ``enum``, ``minLength``...) say what the handler accepts."""
    content_type: str = "application/json"
    tag: str = "api"


OPERATIONS: dict[tuple[str, str], Operation] = {}

LINKS: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {
    ("POST", "/v1/accounts", 201): {
        "RegisterDevice": {
            "operationId": "post_v1_accounts_account_id_devices",
            "parameters": {"path.account_id": "$response.body#/account_id"},
            "description": "register a device for the new account"},
        "FileAccessRequest": {
            "operationId": "post_v1_privacy_requests",
            "parameters": {"header.Authorization": "Bearer {$response.body#/user_token}"},
            "requestBody": {"kind": "access"},
            "description": "the new account holder asks for their data"},
        "FileRequestByEmail": {
            "operationId": "post_v1_privacy_requests",
            "requestBody": {"kind": "access", "email": "$request.body#/email"},
            "description": "someone asks by email for the data of the new account's address"},
    },
    ("POST", "/v1/accounts/{account_id}/devices", 201): {
        "DeregisterDevice": {
            "operationId": "delete_v1_devices_device_id",
            "parameters": {"path.device_id": "$response.body#/device_id"}},
    },
    ("POST", "/v1/privacy/requests", 201): {
        "VerifyByCode": {
            "operationId": "post_v1_privacy_requests_request_id_verify",
            "parameters": {"path.request_id": "$response.body#/request_id",
                           "header.Authorization": "Bearer {$response.body#/requester_token}"},
            "description": "the email path: answer the code with the requester token"},
        "RequestStatus": {
            "operationId": "get_v1_privacy_requests_request_id",
            "parameters": {"path.request_id": "$response.body#/request_id", "query.wait": 10},
            "description": "wait for the request to finish"},
    },
    ("POST", "/v1/privacy/requests/{request_id}/verify", 200): {
        "StatusAfterVerify": {
            "operationId": "get_v1_privacy_requests_request_id",
            "parameters": {"path.request_id": "$response.body#/request_id", "query.wait": 10}},
    },
    ("GET", "/v1/privacy/requests/{request_id}", 200): {
        "Download": {
            "operationId": "get_v1_privacy_downloads_token",
            "parameters": {"path.token": "$response.body#/download_token"},
            "description": "fetch the package once the request is complete"},
    },
}
"""OpenAPI links: how a client walks from an account to a device, a request, its code and
the download. Stateful API testers follow them."""


def document(method: str, path: str, summary: str, *, roles: tuple[str, ...],
             body: type[BaseModel] | None = None, responses: dict[int, str] | None = None,
             response_schema: dict[str, Any] | None = None,
             query: tuple[tuple[Any, ...], ...] = (),
             content_type: str = "application/json", tag: str = "api") -> None:
    """Declare one operation for the spec."""
    OPERATIONS[(method.upper(), path)] = Operation(
        method.upper(), path, summary, roles, body, dict(responses or {200: "OK"}),
        response_schema, query, content_type, tag)


def build_spec(app: web.Application | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for (method, path), op in sorted(OPERATIONS.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": _op_id(method, path),
            "tags": [op.tag],
            "x-roles": list(op.roles),
            "responses": {},
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(path)
        ]
        params += [
            {"name": q[0], "in": "query", "required": q[2],
             "schema": {"type": q[1], **(q[3] if len(q) > 3 else {})}}
            for q in op.query
        ]
        if params:
            entry["parameters"] = params
        responses = dict(op.responses)
        if op.roles and "anyone" not in op.roles and "link" not in op.roles:
            entry["security"] = [{"bearer": []}]
            # auth.require answers these before any handler logic; every guarded route has them.
            responses.setdefault(401, "No or unknown bearer token")
            if set(op.roles) <= {"admin", "operator", "user"}:
                responses.setdefault(403, "The token's role may not call this")
        if op.body is not None:
            # http.parse_body answers a declared charset other than UTF-8 before validating.
            responses.setdefault(415, "the body is declared in a charset other than UTF-8")
            name = op.body.__name__
            schemas[name] = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
            for sub_name, sub in schemas[name].pop("$defs", {}).items():
                schemas[sub_name] = sub
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            }
        for status, desc in sorted(responses.items()):
            resp: dict[str, Any] = {"description": desc}
            if status >= 400:
                resp["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            if status == 429:
                resp["headers"] = {"Retry-After": {
                    "required": True, "description": "seconds until the limit has room again",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
            elif status != 204 and status < 300:
                schema = op.response_schema or {"type": "object"}
                resp["content"] = {op.content_type: {"schema": schema}}
            if (method, path, status) in LINKS:
                resp["links"] = LINKS[(method, path, status)]
            entry["responses"][str(status)] = resp
        paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "overheard backend",
            "version": "1.0.0",
            "description": "A simulated smart-speaker recording backend: device ingest, voice "
                           "history, privacy requests (GDPR Art. 15/17) and their delivery.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _op_id(method: str, path: str) -> str:
    words = [p.strip("{}") for p in path.strip("/").split("/") if p]
    return method.lower() + "_" + "_".join(w.replace(".", "_").replace("-", "_") for w in words)
