"""Verifying the audit trail: every chain, every purge record and every checkpoint, from what is stored.

:func:`verify` recomputes every hash from the stored fields and names the first break: an
event changed (its hash no longer matches its fields), removed, or inserted (the next one's
``prev_hash`` no longer matches), a checkpoint dropped, changed or forged, a chain rewritten
with recomputed hashes under a checkpoint that sealed it, or a purge record dropped, changed or
forged. What retention purged (:mod:`orchestrator.store.audit_purges`) is told apart from what
went missing: each chain's first remaining event must link to where the purges cut it, and the
first remaining checkpoint to the last one purged, so a deleted middle range, or a prefix no
signed purge recorded, is still a break.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, insert, select, text

from orchestrator.errors import Conflict
from orchestrator.store import audit_purges, checkpoints
from orchestrator.store.audit import canonical
from orchestrator.store.sql import now
from orchestrator.store.tables import audit_verifications

_WALK = text(f"""
SELECT id, chain, seq, prev_hash, hash,
       encode(sha256(convert_to({canonical()}, 'UTF8')), 'hex') AS expected,
       lag(hash) OVER along AS previous, lag(seq) OVER along AS previous_seq
FROM audit_events WHERE (chain, seq) > (:chain, :seq)
WINDOW along AS (PARTITION BY chain ORDER BY seq) ORDER BY chain, seq LIMIT :batch
""")
_BATCH = 10_000


@dataclass(frozen=True)
class Verdict:
    events: int  # events found intact before the break (all of them when there is none)
    broken_at: int | None = None  # the seq, in its chain, of the first event that does not fit
    event_id: int | None = None
    reason: str | None = None
    chain: str | None = None
    checkpoint: int | None = None  # the checkpoint that does not fit, or whose seal an event broke
    checkpoints: int = 0  # checkpoints found intact
    unsealed: int = 0  # events no checkpoint covers yet (the window a recomputed chain goes unseen)
    signatures: bool = False  # whether the checkpoints' signatures were checked (a public key given)
    purge: int | None = None  # the purge record that does not fit
    purged: int = 0  # events retention purged (as whole checkpoints), by the intact purge records
    purged_through: int = 0  # the last checkpoint purged

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class Purged:
    """What the intact purge records say is gone: checkpoints 1..``through``, whose last one had
    ``checkpoint_hash``, and each cut chain's last purged event (chain -> (seq, hash))."""

    records: int = 0
    events: int = 0
    through: int = 0
    checkpoint_hash: str | None = None
    cut: dict[str, tuple[int, str]] = field(default_factory=dict)
    prev_hash: str | None = None


def verify(engine: Engine, public_key: Ed25519PublicKey | None = None, checkpoint_file: Path | None = None) -> Verdict:
    """Walk the purge records, every chain, then every checkpoint; the first break, if any.

    Purges: their seqs run with no gap, each links to the one before by hash, its hash matches
    what it records and its signature is the public key's (when given). Events: each chain's
    seqs run with no gap from where the purges cut it (else from 1), each event's prev_hash is
    its predecessor's hash (the first's: the last purged event's) and its hash matches its
    fields. Checkpoints: their seqs run with no gap from the last one purged, each links to the
    one before by hash, its hash matches what it seals, its signature is the public key's (when
    given), every head it sealed is still in its chain with that hash, and every checkpoint in
    the file outside the database is still in the database or was purged."""
    if engine.dialect.name != "postgresql":
        raise Conflict("the audit chain is kept by PostgreSQL; local mode (SQLite) has none to verify: set "
                       "MILLRACE_DATABASE_URL to the PostgreSQL database whose chain to check")
    with engine.connect() as conn:
        unchained = conn.execute(text("SELECT min(id) FROM audit_events WHERE seq IS NULL OR chain IS NULL")).scalar()
        if unchained is not None:
            return Verdict(0, 0, unchained, "an event outside the chain (written with the trigger off)")
        purged = _walk_purges(conn, public_key)
        if isinstance(purged, Verdict):
            return purged
        events = _walk_chains(conn, purged)
        if not events.ok:
            return events
        return _walk_checkpoints(conn, events.events, public_key, checkpoint_file, purged)


def _walk_purges(conn: Connection, key: Ed25519PublicKey | None) -> Purged | Verdict:
    def broken(record: int, reason: str) -> Verdict:
        return Verdict(0, reason=reason, purge=record, signatures=key is not None)

    purged = Purged()
    for record in audit_purges.walk(conn):
        if record.seq != purged.records + 1:
            return broken(record.seq, f"purge records {purged.records + 1}..{record.seq - 1} are missing (dropped)")
        if record.prev_hash != purged.prev_hash:
            return broken(record.seq, "its prev_hash is not the hash of the purge record before it")
        if record.hash != audit_purges.purge_hash(record.prev_hash, record.seq, record.at, record.actor,
                                                  record.through_checkpoint, record.checkpoint_hash, record.cut,
                                                  record.events):
            return broken(record.seq, "what it records no longer matches its hash (changed)")
        if key is not None and not checkpoints.signed_by(key, record.hash, record.signature):
            return broken(record.seq, "its signature is not the audit key's (forged, or signed with another key)")
        if record.through_checkpoint <= purged.through:
            return broken(record.seq, f"it purged checkpoint #{record.through_checkpoint}, which an earlier purge had")
        purged.cut.update((cut["chain"], (cut["seq"], cut["hash"])) for cut in record.cut)
        purged.records, purged.events, purged.prev_hash = purged.records + 1, purged.events + record.events, record.hash
        purged.through, purged.checkpoint_hash = record.through_checkpoint, record.checkpoint_hash
    return purged


def _walk_chains(conn: Connection, purged: Purged) -> Verdict:
    checked, chain, seq, previous_hash = 0, "", 0, None
    while True:
        rows = conn.execute(_WALK, {"chain": chain, "seq": seq, "batch": _BATCH}).all()
        if not rows:
            return Verdict(checked)
        for i, row in enumerate(rows):
            if row.previous_seq is not None:
                expected_prev, seq_before = row.previous, row.previous_seq
            elif i == 0 and row.chain == chain:  # the batch begins in the middle of the last one's chain
                expected_prev, seq_before = previous_hash, seq
            else:  # a chain's first event: the first of all, or the first after where the purges cut it
                seq_before, expected_prev = purged.cut.get(row.chain, (0, None))
            broken = _link(row, expected_prev, seq_before)
            if broken:
                return Verdict(checked, row.seq, row.id, broken, row.chain)
            checked += 1
        chain, seq, previous_hash = rows[-1].chain, rows[-1].seq, rows[-1].hash


def _link(row: Any, expected_prev: str | None, seq_before: int) -> str | None:
    if row.seq != seq_before + 1:
        if row.seq <= seq_before:
            return f"a purge removed events up to #{seq_before} of this chain, yet it is there"
        return f"events {seq_before + 1}..{row.seq - 1} are missing"
    if row.prev_hash != expected_prev:
        return "its prev_hash is not the hash of the event before it"
    if row.hash != row.expected:
        return "its fields no longer match its hash (changed)"
    return None


def _walk_checkpoints(conn: Connection, events: int, key: Ed25519PublicKey | None, file: Path | None,
                      purged: Purged) -> Verdict:
    def broken(checkpoint: int, reason: str, **where: Any) -> Verdict:
        return Verdict(events, reason=reason, checkpoint=checkpoint, checkpoints=count - purged.through,
                       signatures=key is not None, purged=purged.events, purged_through=purged.through, **where)

    count, previous_hash, sealed = purged.through, purged.checkpoint_hash, {}
    for point in checkpoints.walk(conn):
        if point.seq != count + 1:
            why = "dropped: no purge recorded them" if count == purged.through else "dropped"
            return broken(point.seq, f"checkpoints {count + 1}..{point.seq - 1} are missing ({why})")
        if point.prev_hash != previous_hash:
            last = "the last one purged" if count == purged.through and purged.records else "the checkpoint before it"
            return broken(point.seq, f"its prev_hash is not the hash of {last}")
        if point.hash != checkpoints.checkpoint_hash(point.prev_hash, point.seq, point.at, point.heads):
            return broken(point.seq, "what it seals no longer matches its hash (changed)")
        if key is not None and not checkpoints.signed_by(key, point.hash, point.signature):
            return broken(point.seq, "its signature is not the audit key's (forged, or signed with another key)")
        sealed.update((head["chain"], head["seq"]) for head in point.heads)
        count, previous_hash = count + 1, point.hash
    head = conn.execute(checkpoints.FIRST_UNSEALED_HEAD).first()
    if head is not None:
        what = "is gone" if head.event_id is None else "has another hash"
        return broken(head.checkpoint, f"event #{head.seq} of {head.chain}, sealed by checkpoint #{head.checkpoint}, "
                      f"{what}: an event at or before it was rewritten or removed and the chain recomputed",
                      broken_at=head.seq, event_id=head.event_id, chain=head.chain)
    stored = {point.seq: point.hash for point in checkpoints.walk(conn)} if file else {}
    if purged.records:  # the last checkpoint purged: its hash is in the purge record
        stored[purged.through] = purged.checkpoint_hash
    for kept in checkpoints.read_file(file) if file else []:
        if kept["seq"] < purged.through:
            continue  # purged by retention; the purge record vouches for the last one
        if stored.get(kept["seq"]) != kept["hash"]:
            what = "not in the database (dropped)" if kept["seq"] not in stored else "another one in the database"
            return broken(kept["seq"], f"checkpoint #{kept['seq']} of {file} is {what}")
    unsealed = events - sum(seq - purged.cut.get(chain, (0, None))[0] for chain, seq in sealed.items())
    return Verdict(events, checkpoints=count - purged.through, unsealed=unsealed, signatures=key is not None,
                   purged=purged.events, purged_through=purged.through)


def keep_verdict(engine: Engine, verdict: Verdict) -> None:
    """Keep a walk's outcome with its time (what the console's audit page shows)."""
    with engine.begin() as conn:
        conn.execute(insert(audit_verifications).values(at=now(), events=verdict.events, ok=verdict.ok,
                                                        broken_event_id=verdict.event_id, reason=verdict.reason))


def last_verdict(engine: Engine) -> dict[str, Any] | None:
    """The newest kept walk of the chain, or None if it was never verified."""
    with engine.connect() as conn:
        row = conn.execute(select(audit_verifications).order_by(audit_verifications.c.id.desc()).limit(1)).first()
    return dict(row._mapping) if row else None
