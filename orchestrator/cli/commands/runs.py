"""Running flows and acting on runs: ``run``, ``runs list/show/logs/restart/timeline/cancel/purge``,
``approve`` and ``reject``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from orchestrator.cli import output
from orchestrator.cli.client import Client
from orchestrator.cli.output import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    emit,
    note,
    output_option,
)
from orchestrator.errors import FlowError

NO_WORKER_AFTER_S = 4.0  # a run still queued this long: say that no worker is taking it
POLL_S = 0.25


@click.command("run")
@click.argument("target")
@click.option("-i", "--input", "pairs", multiple=True, metavar="KEY=VALUE",
              help="an input of the flow (repeat); read as the input's type")
@click.option("--json", "as_json", is_flag=True, help="print the finished run as the API answers it")
@click.option("--local", is_flag=True, help="run a worker for this run (or use the one `millrace up` runs)")
@click.option("--timeout", type=float, default=None, metavar="SECONDS", help="stop waiting after this long (exit 3)")
@click.option("--detach", is_flag=True, help="print the run id and return at once")
@click.option("--idempotency-key", default=None, help="a retry with the same key starts no second run")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="a label on the run, over the flow's "
              "(repeatable)")
@click.option("--priority", type=click.IntRange(0, 9), default=None, help="0-9, over the flow's priority")
@click.pass_obj
def run_command(client: Client, target: str, pairs: tuple[str, ...], as_json: bool, local: bool,
                timeout: float | None, detach: bool, idempotency_key: str | None, labels: tuple[str, ...],
                priority: int | None) -> int:
    """Run TARGET: a flow file (saved first, with the subflow files it names), or a saved
    flow's id; follow its steps, print its result."""
    from orchestrator.cli import files
    from orchestrator.definitions.inputs import parse_text_inputs
    from orchestrator.definitions.labels import parse_label_option
    from orchestrator.definitions.parser import flow_from_stored

    if local and detach:
        raise click.UsageError("--detach would stop the worker --local starts as soon as the run is sent: run "
                               "`millrace up` (whose workers --local uses) or leave out --detach")
    path = Path(target)
    if path.is_file():
        saved = files.save_flow_file(client, path)
    else:
        saved = client.call("GET", f"/flows/{target}").body
    inputs = parse_text_inputs(flow_from_stored(saved["document"]).inputs, list(pairs))
    body = {"inputs": inputs, "version": saved["version"], "labels": dict(parse_label_option(t) for t in labels)}
    if priority is not None:
        body["priority"] = priority
    worker = _worker_for(client, saved) if local else None
    try:
        started = client.call("POST", f"/flows/{saved['id']}/runs", json_body=body,
                              headers={"Idempotency-Key": idempotency_key} if idempotency_key else None).body
        run_id = started["id"]
        note(f"run {run_id} of {saved['id']}@{saved['version']} started")
        if detach:
            click.echo(run_id)
            return 0
        return _follow(client, run_id, timeout, as_json)
    finally:
        if worker is not None:
            from orchestrator.cli.wiring import stop_worker

            stop_worker(worker)


def _worker_for(client: Client, saved: dict[str, Any]) -> Any:
    """A worker for ``run --local``: none if `millrace up` runs one, else one started here."""
    from config.settings import load_settings
    from orchestrator.cli.wiring import running_up, start_worker
    from orchestrator.definitions.parser import flow_from_stored

    if client.remote:
        raise click.UsageError("--local runs a worker on this machine; it cannot go with --url")
    settings = load_settings()
    if running_up(settings):
        note("using the worker `millrace up` runs")
        return None
    from orchestrator.cli.wiring import queues_of

    return start_worker(settings, queues_of(flow_from_stored(saved["document"]), settings))


def _follow(client: Client, run_id: str, timeout: float | None, as_json: bool) -> int:
    progress = output.Progress()
    began = time.monotonic()
    hinted = False
    try:
        while True:
            run = client.call("GET", f"/runs/{run_id}").body
            progress.update(run)
            if run["status"] in ("succeeded", "failed", "cancelled"):
                break
            waited = time.monotonic() - began
            if not hinted and waited > NO_WORKER_AFTER_S and run["status"] == "queued" and not run["steps"]:
                note(f"no worker has taken run {run_id} yet: start one with `millrace worker` (or "
                     "`millrace up`, or `millrace run --local`); it waits in the queue until then")
                hinted = True
            if timeout is not None and waited > timeout:
                note(f"run {run_id} is still {run['status']} after {timeout:g} s; it goes on: "
                     f"`millrace runs show {run_id}`")
                return EXIT_TIMEOUT
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        note(f"\ndetached: run {run_id} goes on; follow it with `millrace runs show {run_id}`, "
             f"cancel it with `millrace runs cancel {run_id}`")
        return EXIT_INTERRUPTED
    if as_json:
        emit(run, "json")
    elif run["status"] == "succeeded":
        output.result(run["result"])
    if run["status"] == "succeeded":
        return 0
    note(f"run {run_id} {run['status']}{': ' + run['error'] if run.get('error') else ''}")
    return EXIT_CANCELLED if run["status"] == "cancelled" else EXIT_FAILED


@click.group("runs")
def runs_group() -> None:
    """Read runs and act on them."""


@runs_group.command("list")
@click.option("--flow", default=None, help="only this flow's runs")
@click.option("--status", type=click.Choice(["queued", "running", "suspended", "succeeded", "failed", "cancelled"]),
              default=None)
@click.option("--trigger", default=None, help="api, cli, schedule, webhook, event, subflow, restart...")
@click.option("--label", "labels", multiple=True, metavar="KEY:VALUE", help="only runs with this label (repeatable)")
@click.option("--input", "given", multiple=True, metavar="NAME=VALUE", help="only runs whose input NAME is VALUE "
              "(repeatable; as the API's inputs.NAME=VALUE)")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@output_option
@click.pass_obj
def runs_list(client: Client, flow: str | None, status: str | None, trigger: str | None, labels: tuple[str, ...],
              given: tuple[str, ...], limit: int, fmt: str) -> None:
    """Runs, newest first."""
    by_input = {f"inputs.{name}": value for name, _, value in (text.partition("=") for text in given)}
    items = client.pages("/runs", {"flow": flow, "status": status, "trigger": trigger, "label": list(labels) or None,
                                   **by_input}, limit=limit)
    for item in items:
        item["took"] = output.seconds(item.get("started_at"), item.get("finished_at"))
    shown = [{**item, "labels": " ".join(f"{k}:{v}" for k, v in sorted(item.get("labels", {}).items())) or None}
             for item in items]  # the table's labels as they are filtered by
    emit(items, fmt, ("id", "flow", "version", "status", "trigger", "labels", "created_at", "took", "error"), shown)


@runs_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="the same as -o json")
@output_option
@click.pass_obj
def runs_show(client: Client, run_id: str, as_json: bool, fmt: str) -> None:
    """A run and every attempt of its steps."""
    run = client.call("GET", f"/runs/{run_id}").body
    if as_json or fmt != "table":
        emit(run, "json" if as_json else fmt)
        return
    click.echo(f"run {run['id']}  flow {run['flow']}@{run['version']}  {run['status']}  ({run['trigger']})")
    if run.get("error"):
        click.echo(f"error: {run['error']}")
    for step in run["steps"]:
        step["took"] = output.seconds(step.get("started_at"), step.get("finished_at"))
    output.table(run["steps"], ("path", "attempt", "status", "took", "worker", "error"))
    if run["status"] == "succeeded":
        click.echo("result:")
        output.result(run["result"])


@runs_group.command("logs")
@click.argument("run_id")
@click.argument("step")
@click.option("--attempt", type=int, default=None, help="only this attempt (1 is the first)")
@click.option("-f", "--follow", is_flag=True, help="wait for the step to end, printing its output as it comes")
@click.pass_obj
def runs_logs(client: Client, run_id: str, step: str, attempt: int | None, follow: bool) -> None:
    """The captured output of a step (every attempt, or one)."""
    shown: dict[int, int] = {}
    while True:
        answer = client.call("GET", f"/runs/{run_id}/steps/{step}/logs", params={"attempt": attempt},
                             ok=(404,) if follow else ())
        attempts = answer.body.get("attempts", []) if answer.status == 200 else []
        for entry in attempts:
            logs = entry["logs"]
            if len(attempts) > 1 and entry["attempt"] not in shown:
                click.echo(f"--- attempt {entry['attempt']} ({entry['status']})")
            click.echo(logs[shown.get(entry["attempt"], 0):], nl=False)
            shown[entry["attempt"]] = len(logs)
        # a failed attempt may be retried: the step is over when its last attempt succeeded or
        # was skipped, or when the run has ended
        ended = bool(attempts) and attempts[-1]["status"] in ("succeeded", "skipped")
        run = client.call("GET", f"/runs/{run_id}").body if follow else None
        if not follow or ended or (run and run["status"] in ("succeeded", "failed", "cancelled")):
            if answer.status == 404:
                raise FlowError(answer.body.get("detail", "no such step"))
            return
        time.sleep(0.5)


@runs_group.command("restart")
@click.argument("run_id")
@click.option("--from", "step", default=None, help="the step path to start at: build, each[3].work, par.fast.run")
@click.option("--failed", is_flag=True, help="re-run only the failed steps and what comes after them")
@click.option("--latest", is_flag=True, help="on the flow's latest saved version (default: the run's own)")
@click.pass_obj
def runs_restart(client: Client, run_id: str, step: str | None, failed: bool, latest: bool) -> None:
    """A new run of a failed or cancelled run, from a step (or its failed steps), reusing the
    results of what it does not re-run; prints its id."""
    if (step is None) == (not failed):
        raise click.UsageError("give --from STEP or --failed")
    body: dict[str, object] = {"from": step} if step is not None else {"from_failed": True}
    if latest:
        body["version"] = "latest"
    click.echo(client.call("POST", f"/runs/{run_id}/restart", json_body=body).body["id"])


@runs_group.command("timeline")
@click.argument("run_id")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the SVG file to write")
@click.pass_obj
def runs_timeline(client: Client, run_id: str, out: Path) -> None:
    """A Gantt chart of a run's step attempts, as SVG."""
    svg = client.call("GET", f"/runs/{run_id}/timeline.svg").body
    out.write_text(svg)
    note(f"wrote {out} (run {run_id})")


@runs_group.command("cancel")
@click.argument("run_id")
@click.pass_obj
def runs_cancel(client: Client, run_id: str) -> None:
    """Cancel a run: its running steps are killed, nothing after them starts; then its finally steps run."""
    run = client.call("POST", f"/runs/{run_id}/cancel", json_body={}).body
    click.echo(run["status"] if not run.get("ending") else f"{run['status']} (its finally steps, then {run['ending']})")


@runs_group.command("purge")
@click.option("--older-than", "older_than", required=True, metavar="DURATION",
              help="finished longer ago than this (30d, 12h; never within MILLRACE_IDEMPOTENCY_WINDOW_S)")
@click.option("--flow", default=None, help="only runs of this flow (with their subflow runs)")
@click.option("--dry-run", is_flag=True, help="count what would be purged; change nothing")
@click.option("--export", "export_to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="append each purged run, with its steps and subflow runs, to this file as a JSON line first")
@click.pass_obj
def runs_purge(client: Client, older_than: str, flow: str | None, dry_run: bool, export_to: Path | None) -> None:
    """Delete finished runs older than DURATION (by when they ended) with their steps, logs, owed
    sends and fires, in batches of MILLRACE_RETENTION_BATCH top-level runs; a run goes with its
    subflow runs. Audit events stay. Acts on this machine's database, never through --url."""
    from config.settings import load_settings
    from orchestrator.cli.wiring import actor, engine_for
    from orchestrator.definitions.durations import parse_duration
    from orchestrator.services.retention import Policy, purge
    from orchestrator.store.retention import Scope
    from orchestrator.store.sql import now

    if client.remote:
        raise click.UsageError("`runs purge` acts on this machine's database: leave out --url")
    if dry_run and export_to is not None:
        raise click.UsageError("--dry-run changes nothing and exports nothing: leave out --export")
    try:
        keep = parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    settings = load_settings()
    policy = Policy(keep, settings.idempotency_window, settings.retention_batch)
    if keep < policy.idempotency_window:
        note(f"runs younger than the idempotency window ({policy.idempotency_window:g}s) are kept")
    scope = Scope(policy.cutoff(keep, now()), flow=flow)
    engine = engine_for(settings)
    if export_to is None:
        found = purge(engine, scope, actor=actor(), batch=policy.batch, dry_run=dry_run)
    else:
        with export_to.open("a", encoding="utf-8") as export:
            found = purge(engine, scope, actor=actor(), batch=policy.batch, export=export)
    what = "would purge" if dry_run else "purged"
    click.echo(f"{what} {found.runs} run(s) finished before {scope.before:%Y-%m-%d %H:%M:%S} UTC with "
               f"{found.steps} step row(s), in {len(found.batches)} batch(es)"
               + ("" if dry_run else f"; {found.fires} fire(s) that started no run, {found.cache_entries} expired "
                                     "cache entries"))


def _decide(verb: str) -> click.Command:
    @click.command(verb)
    @click.argument("run_id")
    @click.argument("step")
    @click.option("--reason", default=None, help="kept in the audit trail")
    @click.pass_obj
    def decide(client: Client, run_id: str, step: str, reason: str | None, value: tuple[str, ...] = ()) -> None:
        body: dict[str, Any] = {"reason": reason}
        if value:
            body["values"] = dict(_form_value(pair) for pair in value)
        answer = client.call("POST", f"/runs/{run_id}/steps/{step}/{verb}", json_body=body).body
        click.echo(answer["decision"])

    decide.help = f"{verb.capitalize()} a step waiting for approval (STEP: its id or path)."
    if verb == "approve":
        decide = click.option("--value", "-v", multiple=True, metavar="FIELD=VALUE",
                              help="a form field's value (read as JSON when it is: 12, true, \"text\")")(decide)
    return decide


def _form_value(pair: str) -> tuple[str, Any]:
    name, sep, text = pair.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"'{pair}' is not FIELD=VALUE", param_hint="--value")
    try:
        return name, json.loads(text)
    except ValueError:
        return name, text


COMMANDS = (run_command, runs_group, _decide("approve"), _decide("reject"))
