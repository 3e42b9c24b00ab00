"""Audit retention's statements: purging the oldest checkpoints with every event they sealed.

A purge takes a prefix of the checkpoints (the oldest, each sealed before the cut) and the
events they sealed, never part of a checkpoint: for each chain those checkpoints sealed, the
events up to the last head they sealed of it. Before it deletes anything it records itself in
``audit_purges``: the last checkpoint it purges and that checkpoint's hash (to which the first
remaining checkpoint links), and for each chain it cut, the seq and hash of the last event
purged (to which the chain's first remaining event links). The record is linked by hash to the
purge before it and signed with the audit key, like a checkpoint: whoever can write the
database cannot pass a deleted middle range off as a purged prefix without that key. The
database lets only the schema's owner delete events and checkpoints, and only those a
checkpoint sealed and a recorded purge covers (migration 0030).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, bindparam, delete, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB

from orchestrator.errors import Conflict
from orchestrator.store import checkpoints
from orchestrator.store.audit import audit, canonical
from orchestrator.store.tables import audit_checkpoints, audit_purges


@dataclass(frozen=True)
class Purge:
    seq: int
    at: dt.datetime
    actor: str
    through_checkpoint: int
    checkpoint_hash: str
    cut: list[dict[str, Any]]  # [{"chain", "seq", "hash"}]: each chain's last purged event, by chain
    events: int
    prev_hash: str | None
    hash: str
    signature: str


@dataclass(frozen=True)
class Span:
    """The checkpoints one batch purges (``first``..``through``) and the events they sealed."""

    first: int
    through: int
    checkpoints: int
    events: int


def purge_hash(prev_hash: str | None, seq: int, at: dt.datetime, actor: str, through: int, checkpoint_hash: str,
               cut: list[dict[str, Any]], events: int) -> str:
    """What a purge record's hash (and so its signature) covers."""
    canonical = json.dumps([prev_hash or "", seq, checkpoints.instant(at), actor, through, checkpoint_hash, cut,
                            events], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def walk(conn: Connection) -> Iterator[Purge]:
    """Every purge record, oldest first."""
    for row in conn.execute(select(audit_purges).order_by(audit_purges.c.seq)):
        yield Purge(row.seq, row.at, row.actor, row.through_checkpoint, row.checkpoint_hash, row.cut, row.events,
                    row.prev_hash, row.hash, row.signature)


def next_span(conn: Connection, before: dt.datetime, most_events: int, *, after: int = 0,
              lock: bool = True) -> Span | None:
    """The oldest checkpoints (after ``after``) sealed before ``before``, in order and with no gap,
    as many as hold at most ``most_events`` events (always at least one); None when the oldest is
    not due. With ``lock``, they are locked so that two purgers never take the same ones."""
    query = select(audit_checkpoints.c.seq, audit_checkpoints.c.at, audit_checkpoints.c.events).where(
        audit_checkpoints.c.seq > after).order_by(audit_checkpoints.c.seq).limit(1000)
    if lock:
        query = query.with_for_update()
    taken: list[Any] = []
    events = 0
    for row in conn.execute(query):
        if row.at >= before or (taken and events + row.events > most_events) or \
                (taken and row.seq != taken[-1].seq + 1):
            break
        taken.append(row)
        events += row.events
    if not taken:
        return None
    return Span(taken[0].seq, taken[-1].seq, len(taken), events)


_CUT = text("""
SELECT DISTINCT ON (h.chain) h.chain, h.seq, h.hash
FROM audit_checkpoints c CROSS JOIN LATERAL jsonb_to_recordset(c.heads) AS h(chain text, seq bigint, hash text)
WHERE c.seq BETWEEN :first AND :through ORDER BY h.chain, h.seq DESC
""")

# The purged events, each checked before it goes: its hash matches its fields, it links to the
# one before it, and the last of each chain is the head a checkpoint signed. A purge never
# deletes the evidence of a rewrite: it refuses, and `millrace audit verify` names the break.
_SPAN_CHECK = text(f"""
WITH cut AS (SELECT * FROM jsonb_to_recordset(:cut) AS h(chain text, seq bigint, hash text)),
span AS (
    SELECT e.id, e.chain, e.seq, e.hash, e.prev_hash, cut.seq AS cut_seq, cut.hash AS cut_hash,
           encode(sha256(convert_to({canonical('e.')}, 'UTF8')), 'hex') AS expected,
           lag(e.hash) OVER along AS previous, lag(e.seq) OVER along AS previous_seq
    FROM audit_events e JOIN cut ON e.chain = cut.chain AND e.seq <= cut.seq
    WINDOW along AS (PARTITION BY e.chain ORDER BY e.seq))
SELECT count(*) AS events,
       min(id) FILTER (WHERE hash <> expected OR (previous_seq IS NOT NULL AND
           (seq <> previous_seq + 1 OR prev_hash IS DISTINCT FROM previous))) AS broken,
       count(*) FILTER (WHERE seq = cut_seq AND hash = cut_hash) AS heads
FROM span
""").bindparams(bindparam("cut", type_=JSONB))
_DELETE_EVENTS = text("""
DELETE FROM audit_events e USING jsonb_to_recordset(:cut) AS h(chain text, seq bigint)
WHERE e.chain = h.chain AND e.seq <= h.seq
""").bindparams(bindparam("cut", type_=JSONB))


def purge_span(conn: Connection, span: Span, key: Ed25519PrivateKey, actor: str, at: dt.datetime) -> Purge:
    """Record the purge of ``span``, signed with ``key``, then delete its events and checkpoints
    (in the caller's transaction: all of it or nothing). Raises Conflict, deleting nothing, when
    an event in the span does not fit its chain or its checkpoints."""
    last = conn.execute(select(audit_purges.c.seq, audit_purges.c.hash, audit_purges.c.through_checkpoint)
                        .order_by(audit_purges.c.seq.desc()).limit(1)).first()
    after = last.through_checkpoint if last else 0
    if span.first != after + 1:  # a prefix nobody recorded is gone: purging on would hide it
        raise Conflict(f"audit purge refused: checkpoints #{after + 1}..#{span.first - 1} are missing, and no purge "
                       "recorded them; run `millrace audit verify`")
    cut = [{"chain": r.chain, "seq": r.seq, "hash": r.hash} for r in conn.execute(
        _CUT, {"first": span.first, "through": span.through})]
    found = conn.execute(_SPAN_CHECK, {"cut": cut}).one()
    if found.broken is not None or found.heads != len(cut) or found.events != span.events:
        where = f"event id {found.broken} does not fit its chain" if found.broken is not None else \
            f"the checkpoints sealed {span.events} events and {found.events} are there"
        raise Conflict(f"audit purge of checkpoints #{span.first}..#{span.through} refused: {where}; "
                       "run `millrace audit verify`: a purge never deletes a break")
    seq, prev_hash = (last.seq + 1, last.hash) if last else (1, None)
    checkpoint_hash = conn.execute(select(audit_checkpoints.c.hash).where(
        audit_checkpoints.c.seq == span.through)).scalar_one()
    digest = purge_hash(prev_hash, seq, at, actor, span.through, checkpoint_hash, cut, span.events)
    record = Purge(seq, at, actor, span.through, checkpoint_hash, cut, span.events, prev_hash, digest,
                   checkpoints.sign(key, digest))
    conn.execute(insert(audit_purges).values(
        seq=seq, at=at, actor=actor, through_checkpoint=span.through, checkpoint_hash=checkpoint_hash, cut=cut,
        events=span.events, prev_hash=prev_hash, hash=digest, signature=record.signature))
    conn.execute(_DELETE_EVENTS, {"cut": cut})
    conn.execute(delete(audit_checkpoints).where(audit_checkpoints.c.seq.between(span.first, span.through)))
    audit(conn, actor, "audit.purged", "audit", purge=seq, checkpoints=[span.first, span.through],
          events=span.events, chains=len(cut))
    return record
