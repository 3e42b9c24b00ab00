"""``millrace import``: other orchestrators' flows as Millrace flows and scripts.

Each subcommand translates its sources (a pure translator in ``orchestrator.importers``),
and ``run_import`` does the rest: checks every flow with Millrace's own parser, prints the
report per file, writes ``--out`` and saves with ``--save`` (scripts before flows, a subflow
before the flows that call it; a file with a problem saves nothing).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import click
import yaml

from orchestrator.cli.client import Client, Refused
from orchestrator.definitions.parser import flow_from_data
from orchestrator.definitions.script_inputs import LANGUAGES, infer_schema
from orchestrator.definitions.steps import SubflowStep
from orchestrator.errors import ValidationError
from orchestrator.importers.report import FileReport, Verdict

EXIT_UNTRANSLATED = 1
_ENDINGS = {"python": ".py", "bash": ".sh", "javascript": ".js", "typescript": ".ts", "sql": ".sql"}


@click.group("import")
def import_group() -> None:
    """Translate flows written for another orchestrator (report, --out files, --save)."""


def _import_command(system: str, what: str) -> None:
    """``millrace import <system>``: its translator's reports checked, printed, written, saved."""

    @import_group.command(system, help=what)
    @click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="write the Millrace flows (and scripts/) here")
    @click.option("--save", is_flag=True, help="save the scripts and flows, file by file (a file with a problem "
                                               "saves nothing)")
    @click.pass_obj
    def command(client: Client, sources: tuple[Path, ...], out: Path | None, save: bool) -> None:
        translator = importlib.import_module(f"orchestrator.importers.{system}")
        code = run_import(client, translator.translate(list(sources)), out, save)
        if code:
            raise click.exceptions.Exit(code)


_import_command("kestra", "Kestra flow YAML (files, or every .yaml/.yml under a directory): namespace.id -> a "
                          "Millrace id.")
_import_command("windmill", "Windmill OpenFlow: `wmill sync pull` trees (x.flow/flow.yaml, x.script.yaml, "
                            "x.schedule.yaml) or plain OpenFlow JSON/YAML files.")


def check(report: FileReport) -> None:
    """Millrace's own validation of each script and flow ``report`` holds (what saving checks
    first), its problems added to the report."""
    for script in report.scripts:
        if script.language not in LANGUAGES:
            report.problems.append(f"script {script.path}: Millrace here runs no {script.language} scripts")
            continue
        try:
            infer_schema(script.language, script.code)
        except ValidationError as exc:
            report.problems += [f"script {script.path}: {p.path}: {p.message}" for p in exc.problems]
    for flow in report.flows:
        try:
            flow_from_data(flow.document)
        except ValidationError as exc:
            report.problems += [f"{flow.flow_id}: {p.path or '(flow)'}: {p.message}" for p in exc.problems]


def run_import(client: Client, reports: list[FileReport], out: Path | None, save: bool) -> int:
    """Check, print, write and save ``reports``; 1 when anything is untranslatable or invalid."""
    for report in reports:
        check(report)
        _print(report)
    if out is not None:
        for report in reports:
            _write(report, out)
    if save:
        _save(client, reports)
    whole = sum(not any(f.verdict is Verdict.UNTRANSLATABLE for f in r.findings) for r in reports)
    valid = sum(not r.problems for r in reports)
    click.echo(f"{len(reports)} files: {whole} with no untranslatable part, {valid} valid, "
               f"{sum(not r.untranslatable for r in reports)} both")
    return EXIT_UNTRANSLATED if any(r.untranslatable for r in reports) else 0


def _print(report: FileReport) -> None:
    counts = {v: sum(1 for f in report.findings if f.verdict is v) for v in Verdict}
    click.echo(f"{report.source}: {counts[Verdict.TRANSLATED]} translated, {counts[Verdict.APPROXIMATED]} "
               f"approximated, {counts[Verdict.UNTRANSLATABLE]} untranslatable")
    for flow in report.flows:
        click.echo(f"  flow {flow.flow_id}  (from {flow.original})")
    for script in report.scripts:
        click.echo(f"  script {script.path}  ({script.language})")
    for original, new in report.renames.items():
        click.echo(f"  renamed {original} -> {new}")
    for finding in report.findings:
        if finding.verdict is not Verdict.TRANSLATED or finding.source_path == "variables":
            click.echo(f"  {finding.verdict.value}: {finding.source_path}: {finding.message}")
    for problem in report.problems:
        click.echo(f"  invalid: {problem}")


def _write(report: FileReport, out: Path) -> None:
    for flow in report.flows:
        target = out / f"{flow.flow_id}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(flow.document, sort_keys=False, allow_unicode=True), encoding="utf-8")
    for script in report.scripts:
        target = out / "scripts" / f"{script.path}{_ENDINGS[script.language]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(script.code, encoding="utf-8")


def _save(client: Client, reports: list[FileReport]) -> None:
    """Scripts first, then flows with each subflow before its callers; a file whose check found
    a problem, or whose script the API refused, saves nothing (more) of its own."""
    ready = [r for r in reports if not r.problems]
    for report in reports:
        if report.problems:
            click.echo(f"not saved: {report.source} (invalid)")
    refused: set[int] = set()
    for i, report in enumerate(ready):
        for script in report.scripts:
            body = {"language": script.language, "code": script.code,
                    **({"summary": script.summary} if script.summary else {})}
            try:
                saved = client.call("PUT", f"/scripts/{script.path}", json_body=body).body
            except Refused as exc:
                click.echo(f"not saved: {report.source}: script {script.path}: {exc}")
                refused.add(i)
                break
            click.echo(f"saved script {saved['path']}@{saved['version']}")
    flows = [(i, flow) for i, report in enumerate(ready) if i not in refused for flow in report.flows]
    for i, flow in _callees_first(flows):
        if i in refused:
            continue
        try:
            saved = client.call("PUT", f"/flows/{flow.flow_id}", text=json.dumps(flow.document),
                                content_type="application/json").body
        except Refused as exc:
            click.echo(f"not saved: {ready[i].source}: flow {flow.flow_id}: {exc}")
            refused.add(i)
            continue
        click.echo(f"saved flow {saved['id']}@{saved['version']}")


def _callees_first(flows: list) -> list:
    """``flows`` ordered so that a flow another one calls with ``flow:`` comes before it."""
    by_id = {flow.flow_id: (i, flow) for i, flow in flows}
    ordered, seen = [], set()

    def visit(flow_id: str, chain: frozenset[str]) -> None:
        if flow_id in seen or flow_id in chain or flow_id not in by_id:
            return
        document = flow_from_data(by_id[flow_id][1].document)
        for step, _ in document.walk():
            if isinstance(step, SubflowStep):
                visit(step.flow.split("@")[0], chain | {flow_id})
        seen.add(flow_id)
        ordered.append(by_id[flow_id])

    for _, flow in flows:
        visit(flow.flow_id, frozenset())
    return ordered


COMMANDS = (import_group,)
