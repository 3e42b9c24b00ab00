"""Running flows and acting on runs: ``run``, ``runs show/restart/timeline/cancel``,
``approve`` and ``reject``."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from config.settings import load_settings
from orchestrator.cli.wiring import actor, engine_for, publisher_for, queues_of, revoke, start_worker, stop_worker
from orchestrator.definitions.inputs import parse_text_inputs
from orchestrator.definitions.parser import flow_from_data
from orchestrator.execution.lifecycle import RunStatus
from orchestrator.execution.plan import build_plan
from orchestrator.store import versions, views
from orchestrator.store.views import RunView


def add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a flow file, wait, print its result")
    run.add_argument("file", type=Path)
    run.add_argument("--input", "-i", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--json", action="store_true", help="print run id, status, result and steps as JSON")
    run.add_argument("--local", action="store_true", help="start a worker for this run")
    run.add_argument("--timeout", type=float, default=None, help="give up waiting after SECONDS")
    run.set_defaults(handler=cmd_run)


def add_runs(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="inspect runs")
    runs_sub = runs.add_subparsers()
    show = runs_sub.add_parser("show", help="a run and its steps")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_runs_show)

    restart_ = runs_sub.add_parser("restart", help="a new run of a failed run from a top-level step")
    restart_.add_argument("run_id")
    restart_.add_argument("--from", dest="step", required=True, help="the top-level step id to start at")
    restart_.set_defaults(handler=cmd_runs_restart)

    timeline = runs_sub.add_parser("timeline", help="a Gantt chart of a run's steps, as SVG")
    timeline.add_argument("run_id")
    timeline.add_argument("-o", "--output", required=True, help="the SVG file to write")
    timeline.set_defaults(handler=cmd_runs_timeline)

    cancel_ = runs_sub.add_parser("cancel", help="cancel a run")
    cancel_.add_argument("run_id")
    cancel_.set_defaults(handler=cmd_runs_cancel)


def add_decide(sub: argparse._SubParsersAction) -> None:
    for name, verb in (("approve", "approve"), ("reject", "reject")):
        decide = sub.add_parser(name, help=f"{verb} a step waiting for approval")
        decide.add_argument("run_id")
        decide.add_argument("step", help="the step id or path")
        decide.add_argument("--reason", default=None)
        decide.set_defaults(handler=cmd_decide, approve=name == "approve")


def cmd_run(args: argparse.Namespace) -> int:
    from orchestrator.services.dependencies import index_of
    from orchestrator.services.limits import maxima
    from orchestrator.services.loading import load_flow_file
    from orchestrator.services.runs import submit, wait_for_run

    settings = load_settings()
    engine = engine_for(settings)
    index, ceiling = index_of(settings), maxima(settings)
    flow, source = load_flow_file(args.file, engine, actor=actor(), index=index, ceiling=ceiling)
    inputs = parse_text_inputs(flow.inputs, args.input)
    if settings.local and not args.local:
        print("local mode: the run waits for a worker (`millrace worker`, or pass --local)", file=sys.stderr)
    worker = start_worker(settings, queues_of(flow, settings)) if args.local else None
    try:
        run_id = submit(publisher_for(engine), flow, source, inputs, trigger="cli", actor=actor(), index=index,
                        ceiling=ceiling)
        status = wait_for_run(engine, run_id, args.timeout)
    finally:
        if worker is not None:
            stop_worker(worker)
    run = views.get_run(engine, run_id)
    if args.json:
        print(json.dumps(run_summary(run), default=str))
    elif status is RunStatus.SUCCEEDED:
        print(json.dumps(run.result, indent=2, default=str))
    else:
        print(f"run {run_id} {run.status.value}: {run.error or 'still running'}", file=sys.stderr)
    return 0 if status is RunStatus.SUCCEEDED else 1


def cmd_runs_show(args: argparse.Namespace) -> int:
    engine = engine_for(load_settings())
    run = views.get_run(engine, args.run_id)
    if args.json:
        print(json.dumps(run_summary(run), default=str))
        return 0
    print(f"run {run.id}  flow {run.flow_id}@{run.flow_version}  {run.status}")
    if run.error:
        print(f"error: {run.error}")
    for step in run.steps:
        took = _seconds(step.started_at, step.finished_at)
        line = f"  {step.path:<40} #{step.attempt} {step.status.value:<10} {took}"
        if step.error:
            line += f"  {step.error.splitlines()[0][:120]}"
        print(line)
    print(f"result: {json.dumps(run.result, default=str)}")
    return 0


def cmd_runs_restart(args: argparse.Namespace) -> int:
    from orchestrator.services.runs import restart

    engine = engine_for(load_settings())
    old = views.get_run(engine, args.run_id)
    _, document = versions.load_flow_document(engine, old.flow_id, old.flow_version)
    plan = build_plan(flow_from_data(document), old.flow_version)
    print(restart(publisher_for(engine), plan, old, args.step, actor=actor()))
    return 0


def cmd_runs_timeline(args: argparse.Namespace) -> int:
    from orchestrator.observe.timeline import render_timeline

    run = views.get_run(engine_for(load_settings()), args.run_id)
    Path(args.output).write_text(render_timeline(run))
    print(f"wrote {args.output}: {len(run.steps)} step attempts of run {run.id}", file=sys.stderr)
    return 0


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    from orchestrator.services.decisions import cancel

    cancel(publisher_for(engine_for(load_settings())), revoke, args.run_id, actor=actor())
    print("cancelled")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    from orchestrator.services.decisions import decide_approval

    engine = engine_for(load_settings())
    decide_approval(publisher_for(engine), args.run_id, args.step, approve=args.approve, actor=actor(),
                    reason=args.reason)
    print("approved" if args.approve else "rejected")
    return 0


def run_summary(run: RunView) -> dict[str, Any]:
    """A run as ``millrace run --json`` prints it: one entry per step path."""
    steps: dict[str, dict[str, Any]] = {}
    for row in run.steps:
        entry = steps.setdefault(row.path, {"path": row.path, "attempts": 0,
                                               "started_at": row.started_at})
        entry["attempts"] += 1
        entry["status"] = row.status.value
        entry["finished_at"] = row.finished_at
        entry["created_at"] = entry.get("created_at") or row.created_at
        if row.error:
            entry["error"] = row.error
    return {
        "run_id": run.id,
        "flow": run.flow_id,
        "version": run.flow_version,
        "status": run.status.value,
        "result": run.result,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "steps": list(steps.values()),
    }


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if not start or not end:
        return ""
    return f"{(end - start).total_seconds() * 1000:.0f} ms"
