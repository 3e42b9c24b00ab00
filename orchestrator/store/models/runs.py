"""Runs, step attempts, the outbox of owed sends, the step cache, and the chord bookkeeping of the
Celery result backend."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.execution.lifecycle import UNFINISHED, StepStatus
from orchestrator.store.models.base import Base, Id, Json, Timestamp, partial

# The runs not ended yet and the steps waiting to be decided: a sliver of a long history,
# which the periodic queries (metrics, the scheduler, concurrency, the sweeper) look for.
UNFINISHED_RUN = partial(f"status IN ({', '.join(repr(s) for s in UNFINISHED)})")
WAITING_STEP = partial(f"status = '{StepStatus.WAITING.value}'")


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(200))
    flow_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    inputs: Mapped[dict[str, Any]] = mapped_column(Json)
    result: Mapped[Any] = mapped_column(Json, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[str] = mapped_column(String(32), default="api")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    parent_run_id: Mapped[str | None] = mapped_column(String(36))
    parent_step_run_id: Mapped[int | None] = mapped_column(Id)
    restarted_from: Mapped[str | None] = mapped_column(String(36))  # the failed run it continues
    scripts: Mapped[dict[str, int] | None] = mapped_column(Json, nullable=True)  # script ref -> pinned version
    schedule_id: Mapped[str | None] = mapped_column(String(64))  # the schedule that started it
    # Concurrency: the flow's key value; a held run waits (unpublished) for a free slot.
    concurrency_key: Mapped[str | None] = mapped_column(String(200))
    held: Mapped[bool] = mapped_column(default=False)
    # Debounce: until then, starts with its flow and key coalesce into it (it is sent then).
    debounce_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    labels: Mapped[dict[str, str]] = mapped_column(Json, default=dict, server_default=text("'{}'"))
    priority: Mapped[int | None] = mapped_column(SmallInteger)  # 0-9, its messages' RabbitMQ priority
    depth: Mapped[int] = mapped_column(Integer, default=0)
    # The step whose stop_if ended the run (its result is the run's).
    stopped_at: Mapped[str | None] = mapped_column(String(1000))
    # While its finally steps run: the status the run ends with after them.
    ending: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        Index("ix_runs_flow_created", "flow_id", "created_at"),
        Index("ix_runs_unfinished", "status", **UNFINISHED_RUN),  # (status, created_at) answers the rest
        # Search (GET /api/v1/runs): newest first, by status or trigger, by label or input value.
        Index("ix_runs_created_id", "created_at", "id"),
        Index("ix_runs_status_created", "status", "created_at"),
        Index("ix_runs_trigger_created", "trigger", "created_at"),
        Index("ix_runs_labels", "labels", postgresql_using="gin", postgresql_ops={"labels": "jsonb_path_ops"}),
        Index("ix_runs_inputs", "inputs", postgresql_using="gin", postgresql_ops={"inputs": "jsonb_path_ops"}),
        Index("ix_runs_finished_at", "finished_at"),
        Index("ix_runs_started_at", "started_at"),
        Index("uq_runs_idempotency_key", "flow_id", "idempotency_key", unique=True),
        Index("ix_runs_schedule_unfinished", "schedule_id", **UNFINISHED_RUN),
        Index("ix_runs_concurrency_unfinished", "flow_id", "concurrency_key", "created_at", **UNFINISHED_RUN),
        # Retention finds a run's subflow runs (only subflow runs have a parent).
        Index("ix_runs_parent", "parent_run_id", postgresql_where=text("parent_run_id IS NOT NULL"),
              sqlite_where=text("parent_run_id IS NOT NULL")),
    )


class PurgedRun(Base):
    """A run retention removed, so that its id answers "purged" (410) rather than "unknown" (404)
    where a later run still names it (``restarted_from``) or a link kept it."""

    __tablename__ = "purged_runs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(200))
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    purged_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class JoinedKey(Base):
    """The idempotency key of a start that joined a debounced run (a run's row holds one key:
    its first start's): a retry of that start finds the run it joined, after the window too."""

    __tablename__ = "joined_keys"
    flow_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)

    __table_args__ = (Index("ix_joined_keys_run", "run_id"),)


class StepRun(Base):
    """One attempt of one step (or for_each item) of one run; its outcome is written once."""

    __tablename__ = "step_runs"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("runs.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(1000))
    step_id: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    item_index: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    worker: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(64))  # the Celery task running it, to revoke
    created_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    started_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    result: Mapped[Any] = mapped_column(Json, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    logs: Mapped[str | None] = mapped_column(Text)
    cached: Mapped[bool] = mapped_column(default=False)
    # A waiting step (approval, sleep, subflow) keeps what must be published to go on.
    continuation: Mapped[dict[str, Any] | None] = mapped_column(Json)
    resume_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # A for_each or loop that a `break_if` ended: the path of the step that broke it.
    broke_at: Mapped[str | None] = mapped_column(String(1000))
    # An outcome a restart reused: the run it was recorded in (this row is its copy; nothing ran).
    reused_from: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (
        UniqueConstraint("run_id", "path", "attempt", name="uq_step_runs_attempt"),
        Index("ix_step_runs_waiting", "kind", "resume_at", **WAITING_STEP),
        Index("ix_step_runs_finished_at", "finished_at"),
    )


class OwedSend(Base):
    """Something a commit left owed: a message to send (a run's first message, a failed run's
    on_failure steps, a decided step's continuation) or the follow-up of a run's end. Written
    in the transaction that makes it owed, deleted once done; the sweeper does what is left
    past its time (its doer died in between)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(80))  # "<kind>:<run or attempt id>": owed once
    kind: Mapped[str] = mapped_column(String(16))  # run | on_failure | continuation | follow_up
    run_id: Mapped[str] = mapped_column(String(36))
    attempt_id: Mapped[int | None] = mapped_column(Id)  # a continuation's decided step attempt
    message: Mapped[dict[str, Any] | None] = mapped_column(Json, nullable=True)  # None: built from the run
    owed_since: Mapped[dt.datetime] = mapped_column(Timestamp)

    __table_args__ = (
        UniqueConstraint("key", name="uq_outbox_key"),
        Index("ix_outbox_kind_owed_since", "kind", "owed_since"),
    )


class StepCacheEntry(Base):
    __tablename__ = "step_cache"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    result: Mapped[Any] = mapped_column(Json, nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp, index=True)  # retention deletes the expired


class Chord(Base):
    """A chord whose body fires once, when all its parts have returned."""

    __tablename__ = "chords"
    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    fired_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class ChordPart(Base):
    __tablename__ = "chord_parts"
    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    part_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    result: Mapped[Any] = mapped_column(Json, nullable=True)
