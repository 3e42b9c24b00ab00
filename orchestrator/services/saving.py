"""Saving a flow, the one way every caller does it: check, lock, store.

The CLI, the API and subflow files loaded with a flow all save through :func:`save_flow`,
so a flow is never stored with a ``script:`` step whose inputs do not fit, or with Python
or JavaScript packages that do not resolve, or with TypeScript that does not parse: those
mistakes surface when it is saved, not when it runs.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.definitions.events import OwnNames, check_own_names
from orchestrator.definitions.flow import Flow
from orchestrator.errors import ValidationError
from orchestrator.executors.base import Limits
from orchestrator.executors.environments import Index
from orchestrator.services.dependencies import lock_flow
from orchestrator.services.limits import check_limits, check_loop_iterations, check_sql_databases
from orchestrator.services.scripts import check_script_steps
from orchestrator.services.typescript import save_flow_typescript
from orchestrator.store import versions
from orchestrator.store.models import Base


def save_flow(engine: Engine, flow: Flow, source: str, *, actor: str = "cli", index: Index | None = None,
              ceiling: Limits | None = None, sql_own_database: bool = True,
              max_loop_iterations: int | None = None, own: OwnNames | None = None, home: Path | None = None) -> int:
    """Check ``flow``'s limits (against ``ceiling``, the installation's maxima), its sql
    steps' databases, its loops' iterations (against ``max_loop_iterations``) and its script
    steps, lock its packages, transpile its TypeScript steps (the transpiler installed under
    ``home``), store it; returns its version (a new one unless the latest version is the same
    document)."""
    if ceiling is not None:
        check_limits(flow, ceiling)
    check_sql_databases(flow, sql_own_database)
    if max_loop_iterations is not None:
        check_loop_iterations(flow, max_loop_iterations)
    check_event_triggers(flow, own or OwnNames(tables=own_tables()))
    check_script_steps(engine, flow)
    lock_flow(engine, flow, index or Index())
    save_flow_typescript(engine, flow, index or Index(), home)
    return versions.store_flow(engine, flow, source, actor)


def check_event_triggers(flow: Flow, own: OwnNames) -> None:
    """Refuse event triggers on Millrace's own queues or Celery's."""
    queues = {step.queue for step, _ in flow.walk() if getattr(step, "queue", None)}
    problems = check_own_names(flow.triggers, queues, own)
    if problems:
        raise ValidationError(problems)


def own_names(settings: Settings) -> OwnNames:
    """The installation's queue and table names that event triggers may not consume."""
    return OwnNames(settings.default_queue, settings.queue_prefix, own_tables())


def own_tables() -> frozenset[str]:
    return frozenset({*Base.metadata.tables, "alembic_version"})
