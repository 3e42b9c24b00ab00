"""The append-only audit trail, its chains' heads, the checkpoints sealing them, the record of
what retention purged, and the kept outcomes of its verification."""
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


class AuditEvent(Base):
    """Append-only record of every run transition and decision."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(Timestamp)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(Json)
    # The chain (PostgreSQL: set by a trigger holding the chain's head, so writers of one chain
    # queue): `run:<id>` for a run's events, else `system`; seq orders the chain,
    # hash = sha256 of the JSON array [prev_hash, seq, at, actor, action, target, details].
    chain: Mapped[str | None] = mapped_column(String(300))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))

    # a run's events (target run:<id>) are read by the API; there are two per step
    __table_args__ = (Index("uq_audit_events_chain_seq", "chain", "seq", unique=True),
                      Index("ix_audit_events_target", "target", "id"))


class AuditChain(Base):
    """A chain's head: its last event's seq and hash (the trigger moves it), and how far the
    last checkpoint sealed it."""

    __tablename__ = "audit_chains"
    chain: Mapped[str] = mapped_column(String(300), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))  # the one before (the trigger's RETURNING)
    hash: Mapped[str | None] = mapped_column(String(64))
    sealed_seq: Mapped[int] = mapped_column(BigInteger)
    moved: Mapped[bool] = mapped_column()  # since the last checkpoint

    __table_args__ = (Index("ix_audit_chains_moved", "chain", postgresql_where=text("moved"),
                            sqlite_where=text("moved")), {"postgresql_with": {"fillfactor": 70}})


class AuditCheckpoint(Base):
    """Append-only: the heads of the chains that moved since the checkpoint before, linked to it
    by hash and signed (Ed25519) with a key the database never holds."""

    __tablename__ = "audit_checkpoints"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(Timestamp)
    heads: Mapped[list[dict[str, Any]]] = mapped_column(Json)  # [{chain, seq, hash}], by chain
    events: Mapped[int] = mapped_column(BigInteger)  # how many events it sealed
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(String(100))  # base64; none without MILLRACE_AUDIT_KEY


class AuditPurge(Base):
    """Append-only: one purge of the oldest checkpoints with every event they sealed. It names
    the last checkpoint purged and its hash (the next one links to it) and, for each chain it
    cut, the seq and hash of the last event purged (the chain's first remaining event links to
    it); linked to the purge before by hash and signed like a checkpoint."""

    __tablename__ = "audit_purges"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(Timestamp)
    actor: Mapped[str] = mapped_column(String(200))
    through_checkpoint: Mapped[int] = mapped_column(BigInteger)
    checkpoint_hash: Mapped[str] = mapped_column(String(64))
    cut: Mapped[list[dict[str, Any]]] = mapped_column(Json)  # [{chain, seq, hash}], by chain
    events: Mapped[int] = mapped_column(BigInteger)  # how many events it deleted
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(100))


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
