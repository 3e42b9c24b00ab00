"""Event triggers (a flow's `amqp:`, `mqtt:`, `nats:`, `redis:`, `postgres:` triggers) and
what became of each message they received."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Index,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.store.models.base import Base, Id, Json, Timestamp


class EventTriggerRecord(Base):
    """A flow's event trigger as its latest version declares it, with what the listener
    last reported of its connection and how many messages it fired or refused."""

    __tablename__ = "event_triggers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow_id: Mapped[str] = mapped_column(String(200))
    trigger_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # amqp | mqtt | nats | redis | postgres
    source: Mapped[dict[str, Any]] = mapped_column(Json)  # the kind's mapping, as declared
    inputs: Mapped[dict[str, Any] | None] = mapped_column(Json)  # None: the body is the inputs
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp)  # when its declaration last changed
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending | connected | disconnected
    state_detail: Mapped[str | None] = mapped_column(Text)
    state_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)  # the listener's last report
    fired: Mapped[int] = mapped_column(BigInteger, default=0)
    refused: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (Index("uq_event_triggers_flow", "flow_id", "trigger_id", unique=True),)


class TriggerFire(Base):
    """One message an event trigger received: the run it started, or why it started none.
    Unique per (trigger, key): a message redelivered with the same key finds its fire."""

    __tablename__ = "trigger_fires"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    trigger: Mapped[str] = mapped_column(String(64))  # event_triggers.id
    message_key: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str | None] = mapped_column(String(64))  # for a message with no id: its content's hash
    status: Mapped[str] = mapped_column(String(16))  # started | refused
    run_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(Text)
    topic: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[dt.datetime] = mapped_column(Timestamp)

    __table_args__ = (Index("uq_trigger_fires_key", "trigger", "message_key", unique=True),
                      Index("ix_trigger_fires_digest", "trigger", "digest", "recorded_at"),
                      Index("ix_trigger_fires_page", "trigger", "id"),
                      # Retention: fires that started no run, by age.
                      Index("ix_trigger_fires_unstarted", "recorded_at", postgresql_where=text("run_id IS NULL"),
                            sqlite_where=text("run_id IS NULL")))
