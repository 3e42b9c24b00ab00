"""``millrace``: the command line, and the one place that wires every part together."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from config.settings import Settings, load_settings
from orchestrator import db, records
from orchestrator.access import Role, create_token
from orchestrator.deps import index_of
from orchestrator.errors import FlowError, ValidationError
from orchestrator.flow import Flow
from orchestrator.inputs import parse_text_inputs
from orchestrator.loading import load_flow_file
from orchestrator.models import RunStatus
from orchestrator.parser import flow_from_data
from orchestrator.plan import build_plan
from orchestrator.submission import cancel, decide_approval, restart, submit, wait_for_run


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args) or 0
    except ValidationError as exc:
        print("invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        print(f"error: the database is unreachable: {exc.orig}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        print(f"error: the database refused a request: {exc.orig}", file=sys.stderr)
        return 2


SCENARIO_NAMES = ("light40", "long10", "fanout40", "throughput")  # orchestrator.bench.SCENARIOS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="millrace", description="Workflow orchestration on Celery")
    sub = parser.add_subparsers()

    run = sub.add_parser("run", help="run a flow file, wait, print its result")
    run.add_argument("file", type=Path)
    run.add_argument("--input", "-i", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--json", action="store_true", help="print run id, status, result and steps as JSON")
    run.add_argument("--local", action="store_true", help="start a worker for this run")
    run.add_argument("--timeout", type=float, default=None, help="give up waiting after SECONDS")
    run.set_defaults(handler=cmd_run)

    worker = sub.add_parser("worker", help="start a Celery worker")
    worker.add_argument("-Q", "--queues", default=None)
    worker.add_argument("-c", "--concurrency", type=int, default=None)
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=cmd_worker)

    database = sub.add_parser("db", help="database schema")
    database.add_argument("action", choices=["upgrade"])
    database.set_defaults(handler=cmd_db)

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

    for name, verb in (("approve", "approve"), ("reject", "reject")):
        decide = sub.add_parser(name, help=f"{verb} a step waiting for approval")
        decide.add_argument("run_id")
        decide.add_argument("step", help="the step id or path")
        decide.add_argument("--reason", default=None)
        decide.set_defaults(handler=cmd_decide, approve=name == "approve")

    bench = sub.add_parser("bench", help="Millrace next to raw Celery on the same workers; kept in Postgres")
    bench.add_argument("--scenario", action="append", choices=sorted(SCENARIO_NAMES),
                       help="run only these (repeatable); default: all")
    bench.add_argument("--repetitions", type=int, default=None, help="default: per scenario (2 to 5)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(handler=cmd_bench)
    bench_sub = bench.add_subparsers()
    bench_history = bench_sub.add_parser("history", help="stored results, newest first")
    bench_history.add_argument("--limit", type=int, default=20)
    bench_history.set_defaults(handler=cmd_bench_history)
    bench_compare = bench_sub.add_parser("compare", help="two stored results, scenario by scenario")
    bench_compare.add_argument("a", type=int)
    bench_compare.add_argument("b", type=int)
    bench_compare.set_defaults(handler=cmd_bench_compare)
    bench_chart = bench_sub.add_parser("chart", help="a stored result as an SVG chart")
    bench_chart.add_argument("id", type=int, nargs="?", help="default: the newest")
    bench_chart.add_argument("-o", "--output", required=True)
    bench_chart.set_defaults(handler=cmd_bench_chart)

    deps = sub.add_parser("deps", help="Python steps' package environments")
    deps_sub = deps.add_subparsers()
    prune = deps_sub.add_parser("prune", help="remove environments unused for N days")
    prune.add_argument("--days", type=float, default=30)
    prune.set_defaults(handler=cmd_deps_prune)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers()
    verify = audit_sub.add_parser("verify", help="check the hash chain; name the first broken link")
    verify.set_defaults(handler=cmd_audit_verify)

    flower = sub.add_parser("flower", help="Flower, the Celery monitor, on this broker (basic auth, localhost)")
    flower.add_argument("--port", type=int, default=None, help="default: MILLRACE_FLOWER_PORT or 5555")
    flower.add_argument("--address", default=None, help="default: MILLRACE_FLOWER_ADDRESS or 127.0.0.1")
    flower.set_defaults(handler=cmd_flower)

    scheduler = sub.add_parser("scheduler", help="fire cron schedules (run two for availability: one leads)")
    scheduler.add_argument("--loglevel", default="INFO")
    scheduler.set_defaults(handler=cmd_scheduler)

    api = sub.add_parser("api", help="serve the HTTP API with gunicorn (--dev: Flask's development server)")
    api.add_argument("--port", type=int, default=None, help="default: MILLRACE_API_PORT or 8080")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    api.add_argument("--dev", action="store_true", help="Flask's development server, one process")
    api.set_defaults(handler=cmd_api)

    tokens = sub.add_parser("tokens", help="API tokens")
    tokens_sub = tokens.add_subparsers()
    create = tokens_sub.add_parser("create", help="create a token; it is printed once, on the last line")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.set_defaults(handler=cmd_tokens_create)

    schema = sub.add_parser("schema", help="print the flow JSON Schema")
    schema.set_defaults(handler=cmd_schema)
    return parser


# --- commands ----------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    engine = _engine(settings)
    flow, source = load_flow_file(args.file, engine)
    inputs = parse_text_inputs(flow.inputs, args.input)
    if settings.local and not args.local:
        print("local mode: the run waits for a worker (`millrace worker`, or pass --local)", file=sys.stderr)
    worker = _start_worker(settings, _queues(flow, settings)) if args.local else None
    try:
        run_id = submit(engine, send, flow, source, inputs, trigger="cli", actor=_actor(),
                        index=index_of(settings))
        status = wait_for_run(engine, run_id, args.timeout)
    finally:
        if worker is not None:
            _stop_worker(worker)
    run = records.get_run(engine, run_id)
    if args.json:
        print(json.dumps(run_summary(run), default=str))
    elif status is RunStatus.SUCCEEDED:
        print(json.dumps(run["result"], indent=2, default=str))
    else:
        print(f"run {run_id} {run['status']}: {run['error'] or 'still running'}", file=sys.stderr)
    return 0 if status is RunStatus.SUCCEEDED else 1


def cmd_worker(args: argparse.Namespace) -> int:
    from tasks import app

    argv = ["worker", f"--loglevel={args.loglevel}"]
    if args.queues:
        argv.append(f"--queues={args.queues}")
    if args.concurrency:
        argv.append(f"--concurrency={args.concurrency}")
    app.worker_main(argv)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    settings = load_settings()
    db.upgrade(db.make_engine(settings.database_url))
    print("database schema is up to date")
    return 0


def cmd_runs_timeline(args: argparse.Namespace) -> int:
    from orchestrator.timeline import render_timeline

    run = records.get_run(_engine(load_settings()), args.run_id)
    Path(args.output).write_text(render_timeline(run))
    print(f"wrote {args.output}: {len(run['steps'])} step attempts of run {run['id']}", file=sys.stderr)
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    engine = _engine(load_settings())
    run = records.get_run(engine, args.run_id)
    if args.json:
        print(json.dumps(run_summary(run), default=str))
        return 0
    print(f"run {run['id']}  flow {run['flow_id']}@{run['flow_version']}  {run['status']}")
    if run["error"]:
        print(f"error: {run['error']}")
    for step in run["steps"]:
        took = _seconds(step["started_at"], step["finished_at"])
        line = f"  {step['path']:<40} #{step['attempt']} {step['status']:<10} {took}"
        if step["error"]:
            line += f"  {step['error'].splitlines()[0][:120]}"
        print(line)
    print(f"result: {json.dumps(run['result'], default=str)}")
    return 0


def cmd_runs_restart(args: argparse.Namespace) -> int:
    engine = _engine(load_settings())
    old = records.get_run(engine, args.run_id)
    _, document = records.load_flow_document(engine, old["flow_id"], old["flow_version"])
    plan = build_plan(flow_from_data(document), old["flow_version"])
    print(restart(engine, send, plan, old, args.step, actor=_actor()))
    return 0


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    cancel(_engine(load_settings()), send, revoke, args.run_id, actor=_actor())
    print("cancelled")
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    engine = _engine(load_settings())
    decide_approval(engine, send, args.run_id, args.step, approve=args.approve, actor=_actor(),
                    reason=args.reason)
    print("approved" if args.approve else "rejected")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from orchestrator import bench
    from orchestrator.parser import parse_flow

    engine = _engine(load_settings())

    def start_flow(text: str) -> str:
        return submit(engine, send, parse_flow(text), text, {}, trigger="bench")

    names = args.scenario or list(bench.SCENARIOS)
    results = {}
    for name in names:
        measured = bench.run_scenario(engine, bench.SCENARIOS[name], start_flow=start_flow, send=send,
                                      repetitions=args.repetitions,
                                      progress=lambda line: print(line, file=sys.stderr))
        results[name] = measured.summary()
    summary = {"scenarios": results}
    bench_id = bench.store(engine, summary, {"scenarios": names, "repetitions": args.repetitions})
    print(f"stored as bench {bench_id} (millrace bench history / compare / chart)", file=sys.stderr)
    print(json.dumps(summary, indent=None if args.json else 2))
    return 0


def cmd_bench_history(args: argparse.Namespace) -> int:
    from orchestrator import bench

    for row in bench.history(_engine(load_settings()), args.limit):
        figures = ", ".join(f"{name} {s['millrace_s'] * 1000:.0f} ms (x{s['ratio']})"
                            for name, s in row["summary"]["scenarios"].items())
        print(f"{row['id']:>5}  {row['created_at']:%Y-%m-%d %H:%M}  {row['git_revision'] or '-':<9} "
              f"{row['machine'].get('cpus')} cpu  {figures}")
    return 0


def cmd_bench_compare(args: argparse.Namespace) -> int:
    from orchestrator import bench

    engine = _engine(load_settings())
    print("\n".join(bench.compare(bench.get(engine, args.a), bench.get(engine, args.b))))
    return 0


def cmd_bench_chart(args: argparse.Namespace) -> int:
    from orchestrator import bench
    from orchestrator.bench_chart import render_chart

    engine = _engine(load_settings())
    if args.id is None:
        newest = bench.history(engine, 1)
        if not newest:
            raise SystemExit("no bench result stored yet: run `millrace bench`")
        args.id = newest[0]["id"]
    Path(args.output).write_text(render_chart(bench.get(engine, args.id)))
    print(f"wrote {args.output} (bench {args.id})", file=sys.stderr)
    return 0


def cmd_deps_prune(args: argparse.Namespace) -> int:
    from orchestrator.deps import prune

    settings = load_settings()
    removed = prune(settings.home, args.days)
    print(f"removed {len(removed)} environment(s) unused for {args.days:g} days from {settings.home / 'envs'}"
          + "".join(f"\n  {name}" for name in removed))
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from orchestrator.audit import verify

    verdict = verify(_engine(load_settings()))
    if verdict.ok:
        print(f"audit chain intact: {verdict.events} events")
        return 0
    print(f"audit chain broken at event #{verdict.broken_at} (id {verdict.event_id}): {verdict.reason}; "
          f"{verdict.events} events before it are intact", file=sys.stderr)
    return 1


def cmd_flower(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not settings.flower_basic_auth:
        raise SystemExit("set MILLRACE_FLOWER_BASIC_AUTH=user:password: Flower shows every task's arguments")
    from tasks import app

    app.start(["flower", f"--address={args.address or settings.flower_address}",
               f"--port={args.port or settings.flower_port}", f"--basic-auth={settings.flower_basic_auth}",
               "--persistent=False", "--purge_offline_workers=60",
               # args is `flow / run / step path`: the column that says what a task is doing
               "--tasks_columns=name,args,state,received,started,runtime,worker,uuid"])
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    if load_settings().local:
        raise SystemExit("the scheduler needs PostgreSQL (set MILLRACE_DATABASE_URL)")
    from tasks.scheduler import run_scheduler

    run_scheduler(args.loglevel)
    return 0


def api_app() -> Any:
    """The API app, wired to the configured database and broker (also ``api.wsgi:app``)."""
    from api import create_app

    settings = load_settings()
    return create_app(settings, _engine(settings), send, revoke)


def cmd_api(args: argparse.Namespace) -> int:
    settings = load_settings()
    port = args.port or settings.api_port
    if args.dev:
        api_app().run(host=args.host, port=port)
        return 0
    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = ["millrace-api", "--workers", str(args.workers), "--bind", f"{args.host}:{port}",
                "--access-logfile", "-", "--timeout", "330", "api.wsgi:app"]  # ?wait may hold 300 s
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    engine = _engine(load_settings())
    token = create_token(engine, args.name, Role(args.role))
    print(f"token for {args.name} ({args.role}); it is shown this once:", file=sys.stderr)
    print(token)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(Flow.model_json_schema(by_alias=True), indent=2))
    return 0


# --- helpers -----------------------------------------------------------------------------

def send(signature: Any) -> None:
    """Publish a signature with the Celery app (imported here, at the composition root)."""
    import tasks  # noqa: F401 - makes the app the one signatures are sent with

    signature.apply_async()


def revoke(task_ids: list[str]) -> None:
    """Kill the processes running these tasks (their messages are then dropped, not redone)."""
    from tasks import app

    app.control.revoke(task_ids, terminate=True, signal="SIGKILL")


def _actor() -> str:
    return os.environ.get("USER") or "cli"


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A run as ``millrace run --json`` prints it: one entry per step path."""
    steps: dict[str, dict[str, Any]] = {}
    for row in run["steps"]:
        entry = steps.setdefault(row["path"], {"path": row["path"], "attempts": 0,
                                               "started_at": row["started_at"]})
        entry["attempts"] += 1
        entry["status"] = row["status"]
        entry["finished_at"] = row["finished_at"]
        entry["created_at"] = entry.get("created_at") or row["created_at"]
        if row["error"]:
            entry["error"] = row["error"]
    return {
        "run_id": run["id"],
        "flow": run["flow_id"],
        "version": run["flow_version"],
        "status": run["status"],
        "result": run["result"],
        "error": run["error"],
        "created_at": run["created_at"],
        "started_at": run["started_at"],
        "finished_at": run["finished_at"],
        "steps": list(steps.values()),
    }


def _engine(settings: Settings) -> Engine:
    engine = db.make_engine(settings.database_url)
    if not db.is_current(engine):
        if not settings.local:
            raise FlowError("the database schema is missing or older than this Millrace: "
                            "run `millrace db upgrade`")
        db.upgrade(engine)
    return engine


def _queues(flow: Flow, settings: Settings) -> list[str]:
    plan = build_plan(flow, 0)
    named = {node.step.queue for node in plan.nodes.values() if node.step.queue}
    return [settings.default_queue, *sorted(named)]


def _start_worker(settings: Settings, queues: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--loglevel=WARNING",
               f"--queues={','.join(queues)}", "--concurrency=2", "--without-heartbeat",
               "--without-gossip", "--without-mingle"]
    env = {**os.environ, "MILLRACE_HOME": str(settings.home)}
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / "worker.log", "ab") as log:
        return subprocess.Popen(command, start_new_session=True, env=env, stdout=log, stderr=log)


def _stop_worker(worker: subprocess.Popen) -> None:
    try:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(worker.pid, signal.SIGKILL)


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if not start or not end:
        return ""
    return f"{(end - start).total_seconds() * 1000:.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
