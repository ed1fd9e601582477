"""The ``overheard`` command line: one group, one module per command family.

The only room that imports click. Library code raises its own errors; the commands here
turn them into messages and exit codes. May import every other simulator room and `backend`.
"""

from __future__ import annotations

from pathlib import Path

import click

from backend.serve import CONFIG_HELP, LINK_TTL_HELP, MANUAL_REVIEW_HELP

ADMIN_TOKEN_HELP = "admin token (default: $OVERHEARD_ADMIN_TOKEN)"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="overheard")
def main() -> None:
    """overheard: reproduce how smart-speaker recordings reach the wrong person."""


@main.command()
@click.option("--data", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="data directory (SQLite file, packages, admin-token)")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True, help="0 picks a free port")
@click.option("--admin-token", default=None, help=ADMIN_TOKEN_HELP + "; else generated into DATA/admin-token")
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--manual-review", default=None, metavar="KINDS", help=MANUAL_REVIEW_HELP)
@click.option("--link-ttl", default=None, metavar="DURATION", help=LINK_TTL_HELP)
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              metavar="FILE", help=CONFIG_HELP)
def serve(data: Path, host: str, port: int, admin_token: str | None, log_level: str,
          manual_review: str | None, link_ttl: str | None, config_file: Path | None) -> None:
    """Serve the backend (same as ``python -m backend``)."""
    from backend.errors import ConfigError
    from backend.serve import run
    from backend.settings import serve_settings

    try:
        settings = serve_settings(config_file, manual_review, link_ttl)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    run(data, host, port, admin_token, log_level, settings)


def _register() -> None:
    """Attach the command families that live in their own modules."""
    from simulator.cli.audit import audit
    from simulator.cli.audit_log import audit_log
    from simulator.cli.bench import bench
    from simulator.cli.explore import bench_explore, explore_cmd
    from simulator.cli.faults import faults
    from simulator.cli.run import run, scenarios
    from simulator.cli.simulate import simulate

    for cmd in (run, scenarios, audit, simulate, bench, faults, audit_log, explore_cmd):
        main.add_command(cmd)
    bench.add_command(bench_explore)


_register()
