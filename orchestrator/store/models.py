"""The system of record: SQLAlchemy typed models for flows, runs, step attempts, audit events,
and the chord bookkeeping of the Celery result backend."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

Json = JSON().with_variant(JSONB(), "postgresql")
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator):
    """A time with its zone, read back aware on every database: PostgreSQL keeps the offset;
    SQLite (local mode) keeps none, so what it gives back is read as the UTC it was written in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is not None and dialect.name == "sqlite":
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


Timestamp = UtcDateTime()


class Base(DeclarativeBase):
    pass


class FlowRecord(Base):
    """A flow id and its newest version; versions live in FlowVersion."""

    __tablename__ = "flows"
    flow_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class FlowVersion(Base):
    """One immutable saved version of a flow document."""

    __tablename__ = "flow_versions"
    flow_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(Json)
    source: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class ScriptRecord(Base):
    """A saved script's path and its newest version; versions live in ScriptVersion."""

    __tablename__ = "scripts"
    path: Mapped[str] = mapped_column(String(200), primary_key=True)
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class ScriptVersion(Base):
    """One immutable saved version of a script, with the input schema read from its code."""

    __tablename__ = "script_versions"
    path: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    language: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(String(500))
    input_schema: Mapped[dict[str, Any]] = mapped_column(Json)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(200))


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
    depth: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        Index("ix_runs_flow_created", "flow_id", "created_at"),
        Index("ix_runs_status", "status"),
        Index("ix_runs_finished_at", "finished_at"),
        Index("ix_runs_started_at", "started_at"),
        Index("uq_runs_idempotency_key", "flow_id", "idempotency_key", unique=True),
        Index("ix_runs_schedule_status", "schedule_id", "status"),
        Index("ix_runs_concurrency", "flow_id", "concurrency_key", "status"),
    )


class Schedule(Base):
    """A cron schedule of a flow: declared in the flow's ``triggers`` or made through the API."""

    __tablename__ = "schedules"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(200))
    trigger_id: Mapped[str | None] = mapped_column(String(64))  # set when declared in the flow
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any]] = mapped_column(Json)
    catchup: Mapped[str] = mapped_column(String(8))
    max_catchup: Mapped[int] = mapped_column(Integer)
    overlap: Mapped[str] = mapped_column(String(8))
    enabled: Mapped[bool] = mapped_column(default=True)
    paused_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    next_fire_at: Mapped[dt.datetime] = mapped_column(Timestamp)  # the first slot not yet decided
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp)

    __table_args__ = (
        Index("ix_schedules_due", "enabled", "next_fire_at"),
        Index("uq_schedules_trigger", "flow_id", "trigger_id", unique=True),
    )


class ScheduleFire(Base):
    """What became of one slot of a schedule; the unique key makes a slot fire at most once."""

    __tablename__ = "schedule_fires"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(String(64))
    fire_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(String(16))  # started | skipped | missed | queued
    run_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    recorded_by: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("uq_schedule_fires_slot", "schedule_id", "fire_at", unique=True),
                      Index("ix_schedule_fires_recorded_at", "recorded_at"))


class FlowTriggerRecord(Base):
    """A flow's `triggers: - flow:` entry, indexed by the upstream flow it listens to."""

    __tablename__ = "flow_triggers"
    flow_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    trigger_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    upstream: Mapped[str] = mapped_column(String(200), index=True)
    statuses: Mapped[list[str]] = mapped_column(Json)
    inputs: Mapped[dict[str, Any]] = mapped_column(Json)


class Webhook(Base):
    """A flow's webhook: its own secret token (only the SHA-256 is kept)."""

    __tablename__ = "webhooks"
    flow_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    created_by: Mapped[str] = mapped_column(String(200))


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

    __table_args__ = (
        UniqueConstraint("run_id", "path", "attempt", name="uq_step_runs_attempt"),
        Index("ix_step_runs_waiting", "status", "resume_at"),
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
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class AuditEvent(Base):
    """Append-only record of every run transition and decision."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(Timestamp)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(Json)
    # The chain (PostgreSQL: set by a trigger under a lock, so concurrent writers queue):
    # seq orders it, hash = sha256 of the JSON array [prev_hash, seq, at, actor, action, target, details].
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))

    # a run's events (target run:<id>) are read by the API; there are two per step
    __table_args__ = (Index("uq_audit_events_seq", "seq", unique=True),
                      Index("ix_audit_events_target", "target", "id"))


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


class BenchMark(Base):
    """When a raw-Celery baseline chain of ``millrace bench`` finished."""

    __tablename__ = "bench_marks"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    finished_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class DependencyLock(Base):
    """The exact versions a set of Python requirements resolved to, kept so that runs
    months apart install the same packages."""

    __tablename__ = "dependency_locks"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the sorted requirements
    requirements: Mapped[list[str]] = mapped_column(Json)
    lock: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class BenchRun(Base):
    """One `millrace bench` invocation: its figures, where and on which revision."""

    __tablename__ = "bench_runs"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    git_revision: Mapped[str | None] = mapped_column(String(40))
    machine: Mapped[dict[str, Any]] = mapped_column(Json)
    args: Mapped[dict[str, Any]] = mapped_column(Json)
    summary: Mapped[dict[str, Any]] = mapped_column(Json)


class ApiToken(Base):
    """A bearer token of the API; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # fnmatch patterns of the secrets the flows it saves may read (["*"]: any)
    secrets: Mapped[list[str]] = mapped_column(Json, default=lambda: ["*"], server_default=text("'[\"*\"]'"))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class MetricTotal(Base):
    """A kept counter or histogram bucket: what every fold since the start added up."""

    __tablename__ = "metric_totals"
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    labels: Mapped[str] = mapped_column(String(1000), primary_key=True)  # canonical JSON object
    value: Mapped[float] = mapped_column()


class MetricFold(Base):
    """How far a source's rows have been folded into the totals."""

    __tablename__ = "metric_folds"
    source: Mapped[str] = mapped_column(String(40), primary_key=True)
    folded_until: Mapped[dt.datetime] = mapped_column(Timestamp)


class Variable(Base):
    """A named value flows read as ``vars.<name>``, or, encrypted, as ``secrets.<name>``."""

    __tablename__ = "variables"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    secret: Mapped[bool] = mapped_column(default=False)
    value: Mapped[Any] = mapped_column(Json, nullable=True)  # plain variables only
    ciphertext: Mapped[str | None] = mapped_column(Text)  # secrets only: Fernet token of the JSON value
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class ConsoleSession(Base):
    """A signed-in console: the cookie holds a random id, this row its SHA-256, the token
    it was opened with (never the token itself) and the form secret its pages carry."""

    __tablename__ = "console_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(Id, ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class AuditVerification(Base):
    """The outcome of a walk of the audit chain (`millrace audit verify`), kept so that
    pages show the last one instead of walking the chain at every load."""

    __tablename__ = "audit_verifications"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(Timestamp)
    events: Mapped[int] = mapped_column(BigInteger)
    ok: Mapped[bool] = mapped_column()
    broken_event_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
