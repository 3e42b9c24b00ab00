"""Audit retention: the audit trail's own, longer than runs' (``MILLRACE_AUDIT_RETENTION``, unset:
forever), purged only as whole checkpoints, oldest first, a few thousand events per transaction.

Only the schema's owner may delete audit events and checkpoints (``MILLRACE_DATABASE_OWNER_URL``;
the app's role is refused by its grants and by the guard triggers), and each batch is recorded
first as a purge signed with ``MILLRACE_AUDIT_KEY`` (:mod:`orchestrator.store.audit_purges`), so
that ``millrace audit verify`` of what remains still passes and still catches a rewrite.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from orchestrator.store import audit_purges
from orchestrator.store.sql import now

BATCH_EVENTS = 5000  # events one transaction purges at most (always at least one whole checkpoint)


@dataclass
class AuditPurged:
    """What a purge removed (or, dry, would remove): events, the checkpoints that sealed them,
    and the events of each batch."""

    events: int = 0
    checkpoints: int = 0
    batches: list[int] = field(default_factory=list)

    def add(self, other: AuditPurged) -> None:
        self.events += other.events
        self.checkpoints += other.checkpoints
        self.batches += other.batches

    def describe(self) -> str:
        return f"{self.events} audit event(s) sealed by {self.checkpoints} checkpoint(s)"


def cutoff(keep: float, at: dt.datetime) -> dt.datetime:
    """Checkpoints sealed before this are past ``keep`` seconds (and so are the events they sealed)."""
    return at - dt.timedelta(seconds=keep)


def batches(owner: Engine, before: dt.datetime, *, key: Ed25519PrivateKey | None, actor: str,
            batch: int = BATCH_EVENTS, dry_run: bool = False) -> Iterator[AuditPurged]:
    """Purge the checkpoints sealed before ``before`` with every event they sealed, oldest first,
    about ``batch`` events per transaction, through ``owner`` (an engine of the schema owner's
    role), each batch recorded as a purge signed with ``key`` and named after ``actor``;
    ``dry_run`` only counts (and needs neither the owner's role nor the key)."""
    if not dry_run and key is None:
        raise ValueError("a purge is recorded signed with the audit key: pass it")
    after = 0
    while True:
        with owner.begin() as conn:
            span = audit_purges.next_span(conn, before, batch, after=after, lock=not dry_run)
            if span is None:
                return
            if not dry_run:
                audit_purges.purge_span(conn, span, key, actor, now())
        after = span.through
        yield AuditPurged(span.events, span.checkpoints, [span.events])


def purge(owner: Engine, before: dt.datetime, *, key: Ed25519PrivateKey | None, actor: str,
          batch: int = BATCH_EVENTS, dry_run: bool = False) -> AuditPurged:
    """Every batch :func:`batches` finds due, summed."""
    total = AuditPurged()
    for found in batches(owner, before, key=key, actor=actor, batch=batch, dry_run=dry_run):
        total.add(found)
    return total
