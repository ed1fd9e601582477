"""Admin run-time settings: ``GET/PUT /v1/admin/config`` change what a served backend does."""

from __future__ import annotations

from typing import Any

from conftest import Api


async def test_config_reads_the_start_settings(api: Api) -> None:
    _, body = await api.call("GET", "/v1/admin/config", expect=200)
    assert body == {"manual_review": [], "link_ttl": 5 * 86400, "export_workers": 2,
                    "link_bound": False, "link_single_use": False, "code_ttl": 600,
                    "code_tries": 3}


async def test_manual_review_applies_to_the_next_request(api: Api) -> None:
    user = await api.create_account()
    token = user["user_token"]
    _, first = await api.call("POST", "/v1/privacy/requests", token=token,
                              json_body={"kind": "access"}, expect=201)
    assert first["status"] != "pending"
    _, now = await api.call("PUT", "/v1/admin/config", expect=200,
                            json_body={"manual_review": ["erasure"], "link_ttl": 3600})
    assert (now["manual_review"], now["link_ttl"], now["code_tries"]) == (["erasure"], 3600, 3)
    other = await api.create_account()
    _, second = await api.call("POST", "/v1/privacy/requests", token=other["user_token"],
                               json_body={"kind": "erasure"}, expect=201)
    assert second["status"] == "pending"  # waits for an operator now
    _, log = await api.call("GET", "/v1/admin/audit?limit=5000", expect=200)
    changes = [e["detail"]["changes"] for e in log["entries"] if e["action"] == "config.changed"]
    assert changes == [{"manual_review": ["erasure"], "link_ttl": 3600}]


async def test_bad_settings_are_refused_and_change_nothing(api: Api) -> None:
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"colour": "red"}, 400, "invalid_field", "colour"),
        ({"link_ttl": -1}, 400, "invalid_field", "link_ttl"),
        ({"link_ttl": "5d"}, 400, "invalid_field", "link_ttl"),
        ({"manual_review": ["rectify"]}, 400, "invalid_field", "manual_review"),
        ({"code_tries": True}, 400, "invalid_field", "code_tries"),
        # Valid, but the pool is built at start: a conflict with the running server.
        ({"export_workers": 5, "manual_review": ["access"]}, 409, "setting_fixed",
         "export_workers"),
    ]
    for body, status, code, field in cases:
        got, answer = await api.call("PUT", "/v1/admin/config", json_body=body)
        assert (got, answer["error"], answer.get("field", "")[:len(field)]) == (
            status, code, field), (body, answer)
        assert field in answer["message"]
    _, now = await api.call("GET", "/v1/admin/config", expect=200)
    assert now["manual_review"] == [] and now["export_workers"] == 2
    # The pool size it already has is not a change.
    await api.call("PUT", "/v1/admin/config", json_body={"export_workers": 2}, expect=200)
    user = await api.create_account()
    await api.call("GET", "/v1/admin/config", token=user["user_token"], expect=403)
