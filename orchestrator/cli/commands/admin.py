"""Looking after an installation: ``db``, ``tokens``, ``deps``, ``audit`` and ``schema``."""
from __future__ import annotations

import argparse
import json
import sys

from config.settings import load_settings
from orchestrator.cli.wiring import engine_for
from orchestrator.definitions.flow import Flow
from orchestrator.store import database as db
from orchestrator.store.access import Role, create_token


def add_db(sub: argparse._SubParsersAction) -> None:
    database = sub.add_parser("db", help="database schema")
    database.add_argument("action", choices=["upgrade"])
    database.set_defaults(handler=cmd_db)


def add_deps(sub: argparse._SubParsersAction) -> None:
    deps = sub.add_parser("deps", help="Python steps' package environments")
    deps_sub = deps.add_subparsers()
    prune = deps_sub.add_parser("prune", help="remove environments unused for N days")
    prune.add_argument("--days", type=float, default=30)
    prune.set_defaults(handler=cmd_deps_prune)


def add_audit(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers()
    verify = audit_sub.add_parser("verify", help="check the hash chain; name the first broken link")
    verify.set_defaults(handler=cmd_audit_verify)


def add_tokens(sub: argparse._SubParsersAction) -> None:
    tokens = sub.add_parser("tokens", help="API tokens")
    tokens_sub = tokens.add_subparsers()
    create = tokens_sub.add_parser("create", help="create a token; it is printed once, on the last line")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument("--secret", action="append", metavar="PATTERN",
                        help="a secret (fnmatch pattern) the flows this token saves may read; repeat; default: any")
    create.set_defaults(handler=cmd_tokens_create)


def add_schema(sub: argparse._SubParsersAction) -> None:
    schema = sub.add_parser("schema", help="print the flow JSON Schema")
    schema.set_defaults(handler=cmd_schema)


def cmd_db(args: argparse.Namespace) -> int:
    # As the schema's owner (MILLRACE_DATABASE_OWNER_URL) when that is set.
    db.upgrade(db.make_engine(db.migration_url(load_settings())))
    print("database schema is up to date")
    return 0


def cmd_deps_prune(args: argparse.Namespace) -> int:
    from orchestrator.executors.environments import prune

    settings = load_settings()
    removed = prune(settings.home, args.days)
    print(f"removed {len(removed)} environment(s) unused for {args.days:g} days from {settings.home / 'envs'}"
          + "".join(f"\n  {name}" for name in removed))
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from orchestrator.store.audit import verify

    verdict = verify(engine_for(load_settings()))
    if verdict.ok:
        print(f"audit chain intact: {verdict.events} events")
        return 0
    print(f"audit chain broken at event #{verdict.broken_at} (id {verdict.event_id}): {verdict.reason}; "
          f"{verdict.events} events before it are intact", file=sys.stderr)
    return 1


def cmd_tokens_create(args: argparse.Namespace) -> int:
    engine = engine_for(load_settings())
    token = create_token(engine, args.name, Role(args.role), secret_scope=tuple(args.secret or ["*"]))
    print(f"token for {args.name} ({args.role}); it is shown this once:", file=sys.stderr)
    print(token)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(Flow.model_json_schema(by_alias=True), indent=2))
    return 0
