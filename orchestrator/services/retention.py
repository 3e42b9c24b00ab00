"""Retention: purge finished runs past how long they are kept, in small batches.

How long is the flow's ``retention: {keep: ...}`` (its latest version's) or else the
installation's ``MILLRACE_RETENTION`` (None: forever). A top-level run and its subflow runs go
together, by the top run's flow and its end. No run younger than the idempotency window is
purged, whatever the retention, so an idempotency key always finds its run for that long.
Each batch is one short transaction: the runs, their steps (logs and results), owed sends
and fires go, a tombstone of each id stays (the API answers 410 for it). Audit events stay:
they have their own, longer retention (:mod:`orchestrator.services.audit_retention`; each batch
adds one, ``runs.purged``). An export, when asked,
is written (and flushed) before the batch commits: a batch that fails to commit is exported
again by the next purge.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from sqlalchemy import Engine

from orchestrator.definitions.durations import parse_duration
from orchestrator.store import retention
from orchestrator.store.audit import audit
from orchestrator.store.retention import Scope
from orchestrator.store.sql import now


@dataclass(frozen=True)
class Policy:
    """How long runs are kept: the installation's default (None: forever), the idempotency
    window no purge reaches into, and how many top-level runs one transaction purges."""

    keep: float | None
    idempotency_window: float = 86400.0
    batch: int = 500

    def cutoff(self, keep: float, at: dt.datetime) -> dt.datetime:
        """Runs that finished before this are past ``keep`` and the idempotency window."""
        return at - dt.timedelta(seconds=max(keep, self.idempotency_window))


@dataclass
class Purged:
    """What a purge removed (or, dry, would remove): runs (subflow runs included), their step
    rows, the runs of each batch, fires that started no run, and expired cache entries."""

    runs: int = 0
    steps: int = 0
    batches: list[int] = field(default_factory=list)
    fires: int = 0
    cache_entries: int = 0

    def describe(self) -> str:
        return (f"{self.runs} run(s), {self.steps} step row(s), {self.fires} fire(s), "
                f"{self.cache_entries} cache entries")

    def add(self, other: Purged) -> None:
        self.runs += other.runs
        self.steps += other.steps
        self.batches += other.batches
        self.fires += other.fires
        self.cache_entries += other.cache_entries


def flow_retentions(engine: Engine) -> dict[str, float]:
    """Each flow whose latest version declares ``retention``, with its ``keep`` in seconds."""
    return {flow_id: parse_duration(keep) for flow_id, keep in retention.declared_keeps(engine).items()}


def scopes(engine: Engine, policy: Policy, at: dt.datetime) -> list[Scope]:
    """What is due now: each flow with its own retention, then every other flow by the default."""
    own = flow_retentions(engine)
    due = [Scope(policy.cutoff(keep, at), flow=flow_id) for flow_id, keep in sorted(own.items())]
    if policy.keep is not None:
        due.append(Scope(policy.cutoff(policy.keep, at), except_flows=tuple(sorted(own))))
    return due


def batches(engine: Engine, scope: Scope, *, actor: str, batch: int = 500, dry_run: bool = False,
            export: IO[str] | None = None) -> Iterator[Purged]:
    """Purge ``scope``'s runs ``batch`` top-level runs (with their subflow runs) per transaction,
    yielding what each batch removed, then the scope's fires that started no run; ``dry_run``
    only counts runs and steps. With ``export``, each purged
    family is written to it as one JSON line first. Each batch's audit event (``runs.purged``)
    names ``actor`` and the runs it removed."""
    after = None
    while True:
        with engine.begin() as conn:
            due = retention.due(conn, scope, batch, after, lock=not dry_run)
            run_ids = due.run_ids
            if dry_run:
                found = Purged(len(run_ids), retention.steps_of(conn, run_ids) if run_ids else 0)
            elif run_ids:
                if export is not None:
                    for family in due.families:
                        export.write(json.dumps(retention.exported(conn, family), default=str) + "\n")
                    export.flush()
                    os.fsync(export.fileno())
                found = Purged(*retention.delete_runs(conn, run_ids, now()))
                audit(conn, actor, "runs.purged", f"flow:{scope.flow}" if scope.flow else "runs", runs=found.runs,
                      steps=found.steps, finished_before=scope.before.isoformat(), run_ids=run_ids)
            else:
                found = Purged()
        if run_ids:
            found.batches.append(len(run_ids))
            yield found
        if due.after is None:
            break
        after = due.after
    while not dry_run:
        with engine.begin() as conn:
            deleted = retention.delete_old_fires(conn, scope, batch)
        if deleted:
            yield Purged(fires=deleted)
        if deleted < batch:
            return


def expired_cache(engine: Engine, *, batch: int = 500) -> Iterator[Purged]:
    """Delete the step cache's expired entries, ``batch`` per transaction."""
    while True:
        with engine.begin() as conn:
            deleted = retention.delete_expired_cache(conn, now(), batch)
        if deleted:
            yield Purged(cache_entries=deleted)
        if deleted < batch:
            return


def purge(engine: Engine, scope: Scope, *, actor: str, batch: int = 500, dry_run: bool = False,
          export: IO[str] | None = None) -> Purged:
    """Purge everything in ``scope`` (and, unless dry, the expired cache entries)."""
    total = Purged()
    for found in batches(engine, scope, actor=actor, batch=batch, dry_run=dry_run, export=export):
        total.add(found)
    if not dry_run:
        for found in expired_cache(engine, batch=batch):
            total.add(found)
    return total


def due_batches(engine: Engine, policy: Policy, *, actor: str) -> Iterator[Purged]:
    """Every batch the policy makes due now, scope after scope, then the expired cache: the
    scheduler's leader takes one per tick, so purging never delays a cron slot for long."""
    for scope in scopes(engine, policy, now()):
        yield from batches(engine, scope, actor=actor, batch=policy.batch)
    yield from expired_cache(engine, batch=policy.batch)
