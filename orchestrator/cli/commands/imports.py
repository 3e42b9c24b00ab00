"""``millrace import``: flows of another orchestrator made Millrace flows, reported, written
with ``--out`` and saved with ``--save`` (file by file, through the client, so ``--url`` works)."""
from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.client import Client, Refused
from orchestrator.cli.output import EXIT_FAILED
from orchestrator.importers.report import FileReport


@click.group("import")
def import_group() -> None:
    """Import flows from another orchestrator (Kestra)."""


@import_group.command("kestra")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write each Millrace flow here, as <flow id>.yaml")
@click.option("--save", is_flag=True, help="save the flows, file by file (a file with a problem saves nothing)")
@click.option("-v", "--verbose", is_flag=True, help="list the constructs translated exactly too")
@click.pass_obj
def import_kestra(client: Client, source: Path, out: Path | None, save: bool, verbose: bool) -> int:
    """Kestra flow YAML (a file, or every .yaml/.yml under a directory) as Millrace flows.

    Exit code 1 when any part could not be translated or a flow is not valid."""
    from orchestrator.importers import kestra

    return run_import(client, kestra.translate([source]), out, save, verbose)


def run_import(client: Client, reports: list[FileReport], out: Path | None, save: bool,
               verbose: bool = False) -> int:
    """Check, print, write and save what translators made; the exit code."""
    from orchestrator.importers.checking import check
    from orchestrator.importers.printing import document_text, report_lines

    failed = False
    for report in check(reports):
        texts = {flow.flow_id: document_text(flow.document) for flow in report.flows}
        if out is not None:
            _write(out, report, texts)
        saved = _save(client, report, texts) if save and not report.problems else []
        for line in report_lines(report, verbose=verbose):
            click.echo(line)
        for line in saved:
            click.echo(f"  saved          {line}")
        failed = failed or report.untranslatable
    total = len(reports)
    clean = sum(1 for r in reports if not r.untranslatable)
    click.echo(f"{clean} of {total} file(s) imported with nothing untranslatable and valid")
    return EXIT_FAILED if failed else 0


def _write(out: Path, report: FileReport, texts: dict[str, str]) -> None:
    for flow_id, text in texts.items():
        target = out / f"{flow_id}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for script in report.scripts:
        target = out / "scripts" / script.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(script.code, encoding="utf-8")


def _save(client: Client, report: FileReport, texts: dict[str, str]) -> list[str]:
    """The file's flows validated (with the save-time checks), then its scripts and flows saved;
    a refusal is the report's problem and, when validating, saves nothing of the file."""
    for flow_id, text in texts.items():
        try:
            client.call("POST", "/flows/validate", text=text, content_type="application/yaml")
        except Refused as exc:
            report.problems.append(f"{flow_id}: {exc}")
    saved: list[str] = []
    if report.problems:
        return saved
    try:
        for script in report.scripts:
            body = {"language": script.language, "code": script.code,
                    **({"summary": script.summary} if script.summary else {})}
            answer = client.call("PUT", f"/scripts/{script.path}", json_body=body)
            saved.append(f"script {script.path}@{answer.body['version']}{_unchanged(answer.status)}")
        for flow_id, text in texts.items():
            answer = client.call("PUT", f"/flows/{flow_id}", text=text, content_type="application/yaml")
            saved.append(f"flow {flow_id}@{answer.body['version']}{_unchanged(answer.status)}")
    except Refused as exc:
        report.problems.append(f"saving: {exc}")
    return saved


def _unchanged(status: int) -> str:
    return "" if status == 201 else " (unchanged)"


COMMANDS = (import_group,)
