"""``overheard faults``: the fault and guard catalogue, one line each."""

from __future__ import annotations

import json
import textwrap

import click

from backend.faults import FAULTS, GUARDS


@click.command("faults")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("-v", "--verbose", is_flag=True, help="print each entry's full description")
def faults(as_json: bool, verbose: bool) -> None:
    """List the named faults and guards (the names scenarios and the admin API use)."""
    if as_json:
        out = {
            "faults": [{"name": s.name, "where": s.where, "summary": s.summary,
                        "stopped_by": list(s.counterpart), "params": s.params, "doc": s.doc}
                       for s in FAULTS.values()],
            "guards": [{"name": s.name, "summary": s.summary, "stops": list(s.counterpart),
                        "params": s.params, "doc": s.doc} for s in GUARDS.values()],
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    width = max(len(n) for n in [*FAULTS, *GUARDS])
    click.echo("faults (off by default; each names the guard that stops it):")
    for s in FAULTS.values():
        click.echo(f"  {s.name:<{width}}  {s.summary}  [guard: {', '.join(s.counterpart)}]")
        if verbose:
            click.echo(textwrap.indent(textwrap.fill(" ".join(s.doc.split()), 90), " " * 6))
    click.echo("guards:")
    for s in GUARDS.values():
        click.echo(f"  {s.name:<{width}}  {s.summary}")
        if verbose:
            click.echo(textwrap.indent(textwrap.fill(" ".join(s.doc.split()), 90), " " * 6))
