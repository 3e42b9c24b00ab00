"""The append-only audit trail and the kept outcomes of its verification."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.store.models.base import Base, Id, Json, Timestamp


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
