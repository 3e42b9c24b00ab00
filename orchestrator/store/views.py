"""What readers see of runs, as typed values: a run with its step attempts, pages of runs.

The API, the CLI, the timeline and the benchmark read these; none of them indexes a row."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from orchestrator.execution.checks import error_type
from orchestrator.execution.lifecycle import RunStatus, StepStatus
from orchestrator.store.retention import missing_run
from orchestrator.store.tables import runs, step_runs


@dataclass(frozen=True)
class StepView:
    """One attempt of one step (or for_each item)."""

    id: int
    path: str
    step_id: str
    kind: str
    item_index: int | None
    attempt: int
    status: StepStatus
    deliveries: int
    worker: str | None
    task_id: str | None
    created_at: dt.datetime | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    result: Any
    error: str | None
    logs: str | None
    cached: bool
    broke_at: str | None = None  # a for_each or loop that a break_if ended: the step that broke it
    reused_from: str | None = None  # an outcome a restart reused: the run that recorded it (nothing ran)

    @property
    def error_type(self) -> str | None:
        """What ``steps.<id>.error.type`` is: the exception's class, ``Timeout``, ``exit N``..."""
        return None if self.error is None else error_type(self.error)


@dataclass(frozen=True)
class RunListing:
    """A run as a page of runs shows it."""

    id: str
    flow_id: str
    flow_version: int
    status: RunStatus
    trigger: str
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    labels: dict[str, str]


@dataclass(frozen=True)
class RunView(RunListing):
    """A run with what it was given, what it gave, where it came from, and its attempts
    (empty when read ``with_steps=False``), in the order they were made."""

    inputs: dict[str, Any]
    result: Any
    parent_run_id: str | None
    restarted_from: str | None
    scripts: dict[str, int]
    depth: int
    concurrency_key: str | None
    priority: int | None
    debounce_until: dt.datetime | None
    stopped_at: str | None = None  # the step whose stop_if ended it
    ending: RunStatus | None = None  # while its finally steps run: the status it ends with
    steps: tuple[StepView, ...] = ()


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "steps"]


_STEP, _LISTING, _RUN = _fields(StepView), _fields(RunListing), _fields(RunView)


def _step(row: Any) -> StepView:
    values = {name: row.get(name) for name in _STEP}
    return StepView(**{**values, "status": StepStatus(values["status"])})


_OUTPUT = ("result", "logs")  # a step's heavy columns: up to the result and log limits each


def _listing(cls: type, names: list[str], row: Any, **extra: Any) -> Any:
    values = {name: row[name] for name in names}
    values["status"] = RunStatus(values["status"])
    if "scripts" in values:
        values["scripts"] = values["scripts"] or {}
    values["labels"] = values["labels"] or {}
    if values.get("ending"):
        values["ending"] = RunStatus(values["ending"])
    return cls(**values, **extra)


def get_run(engine: Engine, run_id: str, *, with_steps: bool = True, with_output: bool = True,
            with_logs: bool = True, path: str | None = None, paths: Collection[str] | None = None) -> RunView:
    """A run with its step attempts (none if not ``with_steps``; without their results and
    logs if not ``with_output``, without logs if not ``with_logs``; only ``path``'s, or those of
    ``paths``, if given)."""
    left_out = _OUTPUT if not with_output else ("logs",) if not with_logs else ()
    columns = [c for c in step_runs.c if c.name not in left_out]
    with engine.connect() as conn:
        run = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        if run is None:
            raise missing_run(conn, run_id)
        query = select(*columns).where(step_runs.c.run_id == run_id)
        if path is not None:
            query = query.where(step_runs.c.path == path)
        if paths is not None:
            query = query.where(step_runs.c.path.in_(list(paths)))
        steps = () if not with_steps else tuple(_step(s) for s in conn.execute(
            query.order_by(step_runs.c.id)).mappings())
    return _listing(RunView, _RUN, run, steps=steps)



_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def page_cursor(last: RunListing) -> str:
    """The cursor of the page after one ending with ``last``: its creation time and id."""
    return f"{(last.created_at - _EPOCH) // _MICRO}_{last.id}"


def page_boundary(cursor: str) -> tuple[dt.datetime, str]:
    """What :func:`page_cursor` wrote, as ``list_runs``'s ``before``; ValueError if it is not one."""
    micros, _, run_id = cursor.partition("_")
    try:
        return _EPOCH + int(micros) * _MICRO, run_id
    except OverflowError:
        raise ValueError("not a cursor") from None


@dataclass(frozen=True)
class RunSearch:
    """What a page of runs is filtered by; every part given must hold.

    ``labels`` must all be on the run; ``inputs`` maps an input name to the values it may
    have (any one of them: ``42`` and ``"42"`` for a query string's 42)."""

    flow_id: str | None = None
    status: str | None = None
    trigger: str | None = None
    since: dt.datetime | None = None  # created at or after
    until: dt.datetime | None = None  # created before
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    inputs: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)


def list_runs(engine: Engine, search: RunSearch | None = None, *, before: tuple[dt.datetime, str] | None = None,
              limit: int = 50, **filters: Any) -> list[RunListing]:
    """Runs, newest first; ``before`` is the (created_at, id) of the last run of the previous page.

    On PostgreSQL, labels and input values are containment tests (``@>``) that the GIN
    indexes on ``labels`` and ``inputs`` answer; each other part has a (part, created_at) index."""
    search = search or RunSearch(**filters)
    flow_id, status, trigger, since, until = search.flow_id, search.status, search.trigger, search.since, search.until
    query = select(*(runs.c[name] for name in _LISTING))
    postgres = engine.dialect.name == "postgresql"
    if search.labels:
        query = query.where(_holds(runs.c.labels, search.labels) if postgres else and_(
            *(func.json_extract(runs.c.labels, _json_path(k)) == v for k, v in search.labels.items())))
    for name, values in search.inputs.items():
        query = query.where(or_(*(_holds(runs.c.inputs, {name: v}) if postgres
                                  else func.json_extract(runs.c.inputs, _json_path(name)) == v for v in values)))
    if flow_id:
        query = query.where(runs.c.flow_id == flow_id)
    if status:
        query = query.where(runs.c.status == status)
    if trigger:
        query = query.where(runs.c.trigger == trigger)
    if since:
        query = query.where(runs.c.created_at >= since)
    if until:
        query = query.where(runs.c.created_at < until)
    if before:
        at, run_id = before
        query = query.where((runs.c.created_at < at) | ((runs.c.created_at == at) & (runs.c.id < run_id)))
    query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [_listing(RunListing, _LISTING, r) for r in conn.execute(query).mappings()]


def _holds(column: Any, part: dict[str, Any]) -> Any:
    return type_coerce(column, JSONB).contains(part)


def _json_path(key: str) -> str:
    return '$."' + key.replace('"', "") + '"'


def subflow_runs(engine: Engine, run_id: str) -> dict[int, str]:
    """The child runs a run's subflow steps started: the step attempt's row id -> the child run's id."""
    with engine.connect() as conn:
        rows = conn.execute(select(runs.c.id, runs.c.parent_step_run_id).where(runs.c.parent_run_id == run_id))
        return {row.parent_step_run_id: row.id for row in rows if row.parent_step_run_id is not None}
