"""What starts runs: cron schedules and their fires, flow triggers, webhooks."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.store.models.base import Base, Id, Json, Timestamp, partial


class Schedule(Base):
    """A cron schedule of a flow: declared in the flow's ``triggers`` or made through the API."""

    __tablename__ = "schedules"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(200))
    trigger_id: Mapped[str | None] = mapped_column(String(64))  # set when declared in the flow
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any]] = mapped_column(Json)
    labels: Mapped[dict[str, str] | None] = mapped_column(Json)  # over its flow's, on each run it starts
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
                      Index("ix_schedule_fires_recorded_at", "recorded_at"),
                      # The scheduler looks for queued slots every tick; nearly all others are decided.
                      Index("ix_schedule_fires_queued", "schedule_id", "fire_at", **partial("status = 'queued'")))


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
    labels: Mapped[dict[str, str] | None] = mapped_column(Json)  # over its flow's, on each run it starts
