"""What the command line prints: data as JSON, YAML or a table (``-o``), results as themselves,
progress on stderr (live on a terminal, plain lines otherwise)."""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click
import yaml

# Exit codes (README, "The command line"): 0 done, and for a run it followed:
EXIT_FAILED, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_CANCELLED, EXIT_INTERRUPTED = 1, 2, 3, 4, 130
FORMATS = ("table", "json", "yaml")
output_option = click.option("-o", "--output", "fmt", type=click.Choice(FORMATS), default="table",
                             show_default=True, help="how to print what is read")


def emit(data: Any, fmt: str, columns: Sequence[str] = (), rows: list[dict[str, Any]] | None = None) -> None:
    """``data`` as ``fmt``; a table shows ``columns`` of ``rows`` (default: ``data`` itself)."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
    else:
        table(rows if rows is not None else data, columns)


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)", err=True)
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)[:60]
    return str(value).splitlines()[0][:80] if str(value) else ""


def result(value: Any) -> None:
    """A run's result on stdout: a string as itself, anything else as JSON."""
    click.echo(value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False))


def note(text: str) -> None:
    click.echo(text, err=True)


def seconds(start: str | None, end: str | None) -> str:
    import datetime as dt

    if not start or not end:
        return ""
    took = (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    return f"{took * 1000:.0f} ms" if took < 10 else f"{took:.1f} s"


MARKS = {"succeeded": "✓", "failed": "✗", "skipped": "-", "running": "▸", "waiting": "…"}


class Progress:
    """A run's steps as they change: one line per change, on stderr (a terminal gets the
    marks and colour; a pipe plain words)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, int], str] = {}
        self.tty = sys.stderr.isatty()

    def update(self, run: dict[str, Any]) -> None:
        for step in run.get("steps", []):
            key = (step["path"], step["attempt"])
            if self.seen.get(key) == step["status"]:
                continue
            self.seen[key] = step["status"]
            took = seconds(step.get("started_at"), step.get("finished_at"))
            retry = f" (attempt {step['attempt']})" if step["attempt"] > 1 else ""
            line = f"  {step['path']}{retry}: {step['status']}{f' in {took}' if took else ''}"
            if step.get("error") and step["status"] == "failed":
                line += f": {step['error'].splitlines()[-1][:200]}"
            if self.tty:
                colour = {"succeeded": "green", "failed": "red", "waiting": "yellow"}.get(step["status"])
                line = click.style(f"{MARKS.get(step['status'], ' ')}{line[1:]}", fg=colour)
            note(line)
