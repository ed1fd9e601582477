"""``overheard serve --manual-review KINDS --link-ttl D --config FILE``: a served backend
(a real subprocess) holds requests for an operator and mints links of the given lifetime;
a bad file or flag stops the start with exit 2 and names the file and key."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from backend.errors import ConfigError
from backend.settings import serve_settings
from simulator.fleet.api import LinkView, RequestStatus
from simulator.fleet.client import Client
from simulator.fleet.embedded import server_process


def _lifetime(link: LinkView | None) -> float:
    def at(s: str | None) -> datetime:
        assert s is not None
        return datetime.fromisoformat(s.replace("Z", "+00:00"))

    assert link is not None
    return (at(link.expires_at) - at(link.created_at)).total_seconds()


async def _request_approve_link(client: Client, kind: str = "access"
                                ) -> tuple[str, RequestStatus | None]:
    """File a request signed in; its status; then an operator approves it: the link."""
    account = await client.create_account("Erika Muster", f"erika-{kind}@example.org", "de-DE")
    filed = await client.privacy_request(kind, user_token=account["user_token"])
    if filed.status != "pending":
        return filed.status, None
    operator = await client.create_operator("Operator A")
    await client.ops_approve(operator.operator_token, filed.request_id)
    done = await client.get_privacy_request(filed.request_id, token=account["user_token"],
                                            wait=10)
    return "pending", done


async def test_flags_hold_access_for_an_operator_and_set_the_link_lifetime(tmp_path: Path) -> None:
    async with server_process(tmp_path / "data", extra_args=(
            "--manual-review", "access", "--link-ttl", "36h")) as sp, \
            Client(sp.handle.url, admin_token=sp.handle.admin_token) as client:
        status, done = await _request_approve_link(client)
        assert status == "pending"
        assert done is not None and done.status == "complete" and done.download_url
        assert _lifetime(done.link) == 36 * 3600
        erasure, _ = await _request_approve_link(client, "erasure")
        assert erasure != "pending"  # only access was named


async def test_a_config_file_with_a_flag_over_it(tmp_path: Path) -> None:
    config = tmp_path / "backend.toml"
    config.write_text('manual_review = ["access", "erasure"]\nlink_ttl = "2d"\n'
                      "export_workers = 1\n", encoding="utf-8")
    async with server_process(tmp_path / "data", extra_args=(
            "--config", str(config), "--link-ttl", "90m")) as sp, \
            Client(sp.handle.url, admin_token=sp.handle.admin_token) as client:
        status, done = await _request_approve_link(client)
        assert status == "pending" and done is not None and _lifetime(done.link) == 90 * 60
        erasure, _ = await _request_approve_link(client, "erasure")
        assert erasure == "pending"


async def test_without_flags_nothing_waits_for_an_operator(tmp_path: Path) -> None:
    async with server_process(tmp_path / "data") as sp, \
            Client(sp.handle.url, admin_token=sp.handle.admin_token) as client:
        status, _ = await _request_approve_link(client)
        assert status != "pending"


@pytest.mark.parametrize(("content", "flags", "says"), [
    ('manual_review = ["access"]\nlink_tll = "5d"\n', (), "link_tll: unknown key"),
    ('link_ttl = "soon"\n', (), "link_ttl: 'soon' is not a duration"),
    ('manual_review = ["export"]\n', (), "manual_review.0: Input should be 'access' or 'erasure'"),
    ("export_workers = 99\n", (), "export_workers: Input should be less than or equal to 16"),
    ("manual_review = [\n", (), "not valid TOML"),
    ("", ("--manual-review", "access,delete"), "--manual-review: unknown kind(s) delete"),
    ("", ("--link-ttl", "later"), "serve flags: link_ttl: 'later' is not a duration"),
])
def test_bad_settings_stop_the_start_with_exit_2(tmp_path: Path, content: str,
                                                 flags: tuple[str, ...], says: str) -> None:
    config = tmp_path / "backend.toml"
    config.write_text(content, encoding="utf-8")
    args = ("--config", str(config)) if content else ()
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "serve", "--port", "0",
                           "--data", str(tmp_path / "data"), *args, *flags],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing was started, nothing stored


def test_none_means_no_manual_review() -> None:
    assert serve_settings(None, "none", None).manual_review == []
    with pytest.raises(ConfigError, match="no such file"):
        serve_settings(Path("/nonexistent/backend.toml"), None, None)
