"""``millrace``: the command line. The commands live in ``orchestrator.cli.commands``, a
module per group; what wires the parts together lives in ``orchestrator.cli.wiring``."""
from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import DBAPIError, OperationalError

from orchestrator.cli.commands import admin, bench, runs, serve
from orchestrator.errors import FlowError, ValidationError

# Each adds a command (or a group of subcommands), in the order `millrace --help` lists them.
COMMANDS = (runs.add_run, serve.add_worker, admin.add_db, runs.add_runs, runs.add_decide, bench.add_bench,
            admin.add_deps, admin.add_audit, serve.add_flower, serve.add_scheduler, serve.add_api,
            admin.add_tokens, admin.add_schema)


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="millrace", description="Workflow orchestration on Celery")
    sub = parser.add_subparsers()
    for add in COMMANDS:
        add(sub)
    return parser
