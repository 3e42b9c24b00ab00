"""Long-running processes: ``worker``, ``api``, ``scheduler`` and ``flower``."""
from __future__ import annotations

import argparse
import sys

from config.settings import load_settings
from orchestrator.cli.wiring import api_app


def add_worker(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser("worker", help="start a Celery worker")
    worker.add_argument("-Q", "--queues", default=None)
    worker.add_argument("-c", "--concurrency", type=int, default=None)
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=cmd_worker)


def add_flower(sub: argparse._SubParsersAction) -> None:
    flower = sub.add_parser("flower", help="Flower, the Celery monitor, on this broker (basic auth, localhost)")
    flower.add_argument("--port", type=int, default=None, help="default: MILLRACE_FLOWER_PORT or 5555")
    flower.add_argument("--address", default=None, help="default: MILLRACE_FLOWER_ADDRESS or 127.0.0.1")
    flower.set_defaults(handler=cmd_flower)


def add_scheduler(sub: argparse._SubParsersAction) -> None:
    scheduler = sub.add_parser("scheduler", help="fire cron schedules (run two for availability: one leads)")
    scheduler.add_argument("--loglevel", default="INFO")
    scheduler.set_defaults(handler=cmd_scheduler)


def add_api(sub: argparse._SubParsersAction) -> None:
    api = sub.add_parser("api", help="serve the HTTP API with gunicorn (--dev: Flask's development server)")
    api.add_argument("--port", type=int, default=None, help="default: MILLRACE_API_PORT or 8080")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    api.add_argument("--dev", action="store_true", help="Flask's development server, one process")
    api.set_defaults(handler=cmd_api)


def cmd_worker(args: argparse.Namespace) -> int:
    from tasks import app

    argv = ["worker", f"--loglevel={args.loglevel}"]
    if args.queues:
        argv.append(f"--queues={args.queues}")
    if args.concurrency:
        argv.append(f"--concurrency={args.concurrency}")
    app.worker_main(argv)
    return 0


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


def cmd_api(args: argparse.Namespace) -> int:
    settings = load_settings()
    port = args.port or settings.api_port
    if args.dev:
        import logging

        from api.access_log import RedactingFilter

        logging.getLogger("werkzeug").addFilter(RedactingFilter())
        api_app().run(host=args.host, port=port)
        return 0
    from gunicorn.app.wsgiapp import WSGIApplication

    # threaded workers, a timeout above the longest ?wait, the redacting access log
    sys.argv = ["millrace-api", "--config", "python:api.gunicorn_settings", "--workers", str(args.workers),
                "--bind", f"{args.host}:{port}", "api.wsgi:app"]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
    return 0
