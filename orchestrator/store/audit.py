"""The audit trail: events written beside what they record, and the chains that prove them.

Each event stores the hash of the one before it in its chain: a run's events chain within
the run (so writers of different runs never wait on each other), every other event in the
one ``system`` chain. PostgreSQL writes the chains (a trigger holding the chain's head row,
see migrations 0008 and 0027) and refuses any UPDATE, DELETE or TRUNCATE of ``audit_events``;
signed checkpoints (:mod:`orchestrator.store.checkpoints`) seal the chains' heads.
:func:`verify` recomputes every hash from the stored fields and names the first break: an
event changed (its hash no longer matches its fields), removed, or inserted (the next one's
``prev_hash`` no longer matches), a checkpoint dropped, changed or forged, or a chain
rewritten with recomputed hashes under a checkpoint that sealed it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, func, insert, select, text

from orchestrator.errors import Conflict
from orchestrator.store import checkpoints
from orchestrator.store.sql import now
from orchestrator.store.tables import audit_events, audit_verifications


def audit(conn: Connection, actor: str, action: str, target: str, **details: Any) -> None:
    conn.execute(insert(audit_events).values(at=now(), actor=actor, action=action, target=target, details=details))


def acting(conn: Connection, actor: str) -> None:
    """Name who causes the step transitions of this transaction: the step_runs trigger writes
    their audit events with this actor instead of the row's worker (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.set_config("millrace.actor", actor, True)))


def record_event(engine: Engine, actor: str, action: str, target: str, **details: Any) -> None:
    """An audit event on its own (what happened changed nothing else)."""
    with engine.begin() as conn:
        audit(conn, actor, action, target, **details)


def list_audit(engine: Engine, *, action: str | None = None, target: str | None = None,
               after_id: int = 0, limit: int = 50) -> list[dict[str, Any]]:
    """Audit events, oldest first, after the event id ``after_id``."""
    query = select(audit_events).where(audit_events.c.id > after_id)
    if action:
        query = query.where(audit_events.c.action.startswith(action, autoescape=True))
    if target:
        query = query.where(audit_events.c.target == target)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(audit_events.c.id).limit(limit)).mappings()]



_CANONICAL = """jsonb_build_array(coalesce(prev_hash, ''), seq,
    to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), actor, action, target, details)::text"""
_WALK = text(f"""
SELECT id, chain, seq, prev_hash, hash,
       encode(sha256(convert_to({_CANONICAL}, 'UTF8')), 'hex') AS expected,
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

    @property
    def ok(self) -> bool:
        return self.reason is None


def verify(engine: Engine, public_key: Ed25519PublicKey | None = None, checkpoint_file: Path | None = None) -> Verdict:
    """Walk every chain, then every checkpoint; the first break, if any.

    Events: each chain's seqs run 1, 2, 3... with no gap, each event's prev_hash is its
    predecessor's hash and its hash matches its fields. Checkpoints: their seqs run with no gap,
    each links to the one before by hash, its hash matches what it seals, its signature is the
    public key's (when given), every head it sealed is still in its chain with that hash, and
    every checkpoint in the file outside the database is still in the database."""
    if engine.dialect.name != "postgresql":
        raise Conflict("the audit chain is kept by PostgreSQL; local mode (SQLite) has none to verify: set "
                       "MILLRACE_DATABASE_URL to the PostgreSQL database whose chain to check")
    with engine.connect() as conn:
        unchained = conn.execute(text("SELECT min(id) FROM audit_events WHERE seq IS NULL OR chain IS NULL")).scalar()
        if unchained is not None:
            return Verdict(0, 0, unchained, "an event outside the chain (written with the trigger off)")
        events = _walk_chains(conn)
        if not events.ok:
            return events
        return _walk_checkpoints(conn, events.events, public_key, checkpoint_file)


def _walk_chains(conn: Connection) -> Verdict:
    checked, chain, seq, previous_hash = 0, "", 0, None
    while True:
        rows = conn.execute(_WALK, {"chain": chain, "seq": seq, "batch": _BATCH}).all()
        if not rows:
            return Verdict(checked)
        for i, row in enumerate(rows):
            if i:
                expected_prev, seq_before = row.previous, row.previous_seq or 0
            else:  # the batch may begin in the middle of the last one's chain
                expected_prev, seq_before = (previous_hash, seq) if row.chain == chain else (None, 0)
            broken = _link(row, expected_prev, seq_before)
            if broken:
                return Verdict(checked, row.seq, row.id, broken, row.chain)
            checked += 1
        chain, seq, previous_hash = rows[-1].chain, rows[-1].seq, rows[-1].hash


def _link(row: Any, expected_prev: str | None, seq_before: int) -> str | None:
    if row.seq != seq_before + 1:
        return f"events {seq_before + 1}..{row.seq - 1} are missing"
    if row.prev_hash != expected_prev:
        return "its prev_hash is not the hash of the event before it"
    if row.hash != row.expected:
        return "its fields no longer match its hash (changed)"
    return None


def _walk_checkpoints(conn: Connection, events: int, key: Ed25519PublicKey | None, file: Path | None) -> Verdict:
    def broken(checkpoint: int, reason: str, **where: Any) -> Verdict:
        return Verdict(events, reason=reason, checkpoint=checkpoint, checkpoints=count, signatures=key is not None,
                       **where)

    count, previous, sealed = 0, None, {}
    for point in checkpoints.walk(conn):
        if point.seq != count + 1:
            return broken(point.seq, f"checkpoints {count + 1}..{point.seq - 1} are missing (dropped)")
        if point.prev_hash != (previous.hash if previous else None):
            return broken(point.seq, "its prev_hash is not the hash of the checkpoint before it")
        if point.hash != checkpoints.checkpoint_hash(point.prev_hash, point.seq, point.at, point.heads):
            return broken(point.seq, "what it seals no longer matches its hash (changed)")
        if key is not None and not checkpoints.signed_by(key, point.hash, point.signature):
            return broken(point.seq, "its signature is not the audit key's (forged, or signed with another key)")
        sealed.update((head["chain"], head["seq"]) for head in point.heads)
        count, previous = count + 1, point
    head = conn.execute(checkpoints.FIRST_UNSEALED_HEAD).first()
    if head is not None:
        what = "is gone" if head.event_id is None else "has another hash"
        return broken(head.checkpoint, f"event #{head.seq} of {head.chain}, sealed by checkpoint #{head.checkpoint}, "
                      f"{what}: an event at or before it was rewritten or removed and the chain recomputed",
                      broken_at=head.seq, event_id=head.event_id, chain=head.chain)
    stored = {point.seq: point.hash for point in checkpoints.walk(conn)} if file else {}
    for kept in checkpoints.read_file(file) if file else []:
        if stored.get(kept["seq"]) != kept["hash"]:
            what = "not in the database (dropped)" if kept["seq"] not in stored else "another one in the database"
            return broken(kept["seq"], f"checkpoint #{kept['seq']} of {file} is {what}")
    return Verdict(events, checkpoints=count, unsealed=events - sum(sealed.values()), signatures=key is not None)


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


def actors_of(engine: Engine, action: str, targets: list[str]) -> dict[str, str]:
    """The actor of each target's ``action`` event (``run:<id>`` -> ``<id>``: who), in one query."""
    if not targets:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(audit_events.c.target, audit_events.c.actor).where(
            audit_events.c.action == action, audit_events.c.target.in_(targets)))
        return {row.target.split(":", 1)[1]: row.actor for row in rows}
