"""Looking after an installation: ``db``, ``tokens``, ``deps``, ``audit``, ``schema`` and
``secret-key``. These act on this machine's configuration and database, never through --url."""
from __future__ import annotations

import json

import click

from config.settings import load_settings
from orchestrator.cli.output import note
from orchestrator.store.access import Role


@click.group("db")
def db_group() -> None:
    """The database schema."""


@db_group.command("upgrade")
@click.option("--wait", "wait_s", type=float, default=0, metavar="SECONDS",
              help="wait this long for the database to answer (a container starting beside it)")
def db_upgrade(wait_s: float) -> None:
    """Bring the schema up to date (as MILLRACE_DATABASE_OWNER_URL's role when that is set)."""
    import time

    from sqlalchemy.exc import OperationalError

    from orchestrator.store import database as db

    engine = db.make_engine(db.migration_url(load_settings()))
    deadline = time.monotonic() + wait_s
    while True:
        try:
            db.ping(engine)
            break
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            note(f"waiting for the database: {str(exc.orig).strip().splitlines()[0][:200]}")
            time.sleep(1)
    db.upgrade(engine)
    click.echo("database schema is up to date")


@click.group("deps")
def deps_group() -> None:
    """Python steps' package environments."""


@deps_group.command("prune")
@click.option("--days", type=float, default=30, show_default=True, help="unused for this many days")
def deps_prune(days: float) -> None:
    """Remove environments unused for DAYS days."""
    from orchestrator.executors.environments import prune

    settings = load_settings()
    removed = prune(settings.home, days)
    click.echo(f"removed {len(removed)} environment(s) unused for {days:g} days from {settings.home / 'envs'}"
               + "".join(f"\n  {name}" for name in removed))


@click.group("audit")
def audit_group() -> None:
    """The audit trail."""


@audit_group.command("verify")
def audit_verify() -> int:
    """Check the chains, the checkpoints and their signatures; name the first break (exit 1).

    Signatures are checked with MILLRACE_AUDIT_PUBLIC_KEY, and the checkpoints kept in
    MILLRACE_AUDIT_CHECKPOINT_FILE must all still be in the database, when those are set."""
    from pathlib import Path

    from orchestrator.cli.wiring import engine_for
    from orchestrator.store.checkpoints import public_key
    from orchestrator.store.verification import keep_verdict, verify

    settings = load_settings()
    engine = engine_for(settings)
    try:
        key = public_key(settings.audit_public_key) if settings.audit_public_key else None
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    verdict = verify(engine, key, Path(settings.audit_checkpoint_file) if settings.audit_checkpoint_file else None)
    keep_verdict(engine, verdict)  # the console shows the last one
    if verdict.ok:
        signed = "signatures checked" if verdict.signatures else \
            "signatures not checked: set MILLRACE_AUDIT_PUBLIC_KEY"
        purged = f"; {verdict.purged} events purged by retention with checkpoints 1..{verdict.purged_through}" \
            if verdict.purged_through else ""
        click.echo(f"audit chain intact: {verdict.events} events, {verdict.checkpoints} checkpoints ({signed}); "
                   f"{verdict.unsealed} events not sealed by a checkpoint yet{purged}")
        return 0
    if verdict.purge is not None:
        where = f"purge record #{verdict.purge}"
    elif verdict.checkpoint is not None and verdict.broken_at is None:
        where = f"checkpoint #{verdict.checkpoint}"
    else:
        where = f"event #{verdict.broken_at} of {verdict.chain} (id {verdict.event_id})"
    note(f"audit chain broken at {where}: {verdict.reason}; {verdict.events} events and "
         f"{verdict.checkpoints} checkpoints before it are intact")
    return 1


@audit_group.command("purge")
@click.option("--older-than", "older_than", required=True, metavar="DURATION",
              help="sealed by a checkpoint longer ago than this (400d, 12h)")
@click.option("--dry-run", is_flag=True, help="count what would be purged; change nothing")
def audit_purge(older_than: str, dry_run: bool) -> None:
    """Delete the audit events sealed by checkpoints older than DURATION, as whole checkpoints,
    oldest first, each batch recorded as a purge signed with MILLRACE_AUDIT_KEY. Only the schema's
    owner may: this connects as MILLRACE_DATABASE_OWNER_URL."""
    from orchestrator.cli.wiring import actor, engine_for
    from orchestrator.definitions.durations import parse_duration
    from orchestrator.services.audit_retention import cutoff, purge
    from orchestrator.store.checkpoints import private_key
    from orchestrator.store.database import make_engine
    from orchestrator.store.sql import now

    try:
        before = cutoff(parse_duration(older_than), now())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    settings = load_settings()
    if not settings.database_owner_url and not dry_run:
        raise click.UsageError("only the schema's owner may delete audit events: set MILLRACE_DATABASE_OWNER_URL "
                               "to the owner's database URL (the role `millrace db upgrade` migrates as)")
    if not settings.audit_key and not dry_run:
        raise click.UsageError("each purge is recorded signed with the audit key: set MILLRACE_AUDIT_KEY (the "
                               "private key the scheduler signs checkpoints with)")
    try:
        key = private_key(settings.audit_key) if settings.audit_key else None
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    owner = make_engine(settings.database_owner_url, 2) if settings.database_owner_url else engine_for(settings)
    found = purge(owner, before, key=key, actor=actor(), dry_run=dry_run)
    click.echo(f"{'would purge' if dry_run else 'purged'} {found.describe()} before "
               f"{before:%Y-%m-%d %H:%M:%S} UTC, in {len(found.batches)} batch(es)")


@audit_group.command("keygen")
def audit_keygen() -> None:
    """Print a new Ed25519 key pair for signing audit checkpoints."""
    from orchestrator.store.checkpoints import new_key_pair

    private, public = new_key_pair()
    click.echo("# the scheduler signs with the private key; keep it out of the database and its backups")
    click.echo(f"MILLRACE_AUDIT_KEY={private}")
    click.echo("# `millrace audit verify` needs only the public key")
    click.echo(f"MILLRACE_AUDIT_PUBLIC_KEY={public}")


@click.group("tokens")
def tokens_group() -> None:
    """API tokens (the first one is made here; then `POST /api/v1/tokens` as an admin)."""


@tokens_group.command("create")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--name", required=True, help="who or what holds it (audit events name it)")
@click.option("--secret", "secrets", multiple=True, metavar="PATTERN",
              help="a secret (fnmatch pattern) the flows this token saves may read; repeat; default: any")
def tokens_create(role: str, name: str, secrets: tuple[str, ...]) -> None:
    """Create a token; it is printed once, on the last line."""
    from orchestrator.cli.wiring import engine_for
    from orchestrator.store.access import create_token

    token = create_token(engine_for(load_settings()), name, Role(role), secret_scope=secrets or ("*",))
    note(f"token for {name} ({role}); it is shown this once:")
    click.echo(token)


@click.command("schema")
def schema_command() -> None:
    """Print the flow JSON Schema (for editors: it accepts exactly what Millrace accepts, with an
    example of every step kind, step option, flow field and trigger kind)."""
    from orchestrator.definitions.examples import flow_schema

    click.echo(json.dumps(flow_schema(), indent=2))


@click.command("secret-key")
def secret_key_command() -> None:
    """Print a new key for MILLRACE_SECRET_KEY (Fernet; comma-separate keys to rotate, newest first)."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())


COMMANDS = (db_group, deps_group, audit_group, tokens_group, schema_command, secret_key_command)
