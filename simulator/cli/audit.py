"""``overheard audit``: judge one package against the ledger, from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from simulator.judge.audit import AuditError, audit_against_ledger, audit_table


@click.command("audit")
@click.argument("package", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--ledger", "ledger_path", required=True, type=click.Path(path_type=Path),
              help="ledger.jsonl the simulator wrote (the ground truth)")
@click.option("--subject", default=None,
              help="household or account that received the package (default: the ledger's "
                   "record of who downloaded a zip with this sha256; never the manifest)")
@click.option("--as-of", default=None,
              help="RFC 3339 time the package was made: later recordings are not 'missing'")
@click.option("--not-redeemed", is_flag=True,
              help="the package's link was never used (decides Art. 34 in the leaks)")
@click.option("--json", "as_json", is_flag=True, help="print the packages entry as JSON")
@click.option("--files", "with_files", is_flag=True, help="with --json: add per-file verdicts")
def audit(package: Path, ledger_path: Path, subject: str | None, as_of: str | None,
          not_redeemed: bool, as_json: bool, with_files: bool) -> None:
    """Judge PACKAGE.zip by its content against the ledger.

    The recipient is the household the ledger records as having downloaded a zip with
    this file's sha256, or --subject; never the package's manifest.

    \b
    Exit 0: every file is the recipient's own, intact; nothing missing, duplicated or
            unattributable.
    Exit 1: a foreign, missing, duplicated, corrupt or unattributable file.
    Exit 2: cannot decide: nobody says who received the package, most files match
            nothing in the ledger (wrong ledger?), --subject names nobody in the ledger,
            or the package or ledger cannot be read (not a zip, hostile names, a zip
            bomb); nothing is extracted to disk in any case.
    """
    try:
        result = audit_against_ledger(package, ledger_path, subject, as_of,
                                      link_redeemed=not not_redeemed)
    except AuditError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(result.to_dict(files=with_files), indent=2, ensure_ascii=False))
    else:
        click.echo(audit_table(result, package))
    if result.undecidable:
        click.echo(f"error: {result.unattributable} of {result.files} files match nothing in "
                   f"{ledger_path}: is it this package's ledger?", err=True)
    sys.exit(result.exit_code)
