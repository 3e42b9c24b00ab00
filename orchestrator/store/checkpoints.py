"""Checkpoints: what vouches for the audit chains from outside the database.

Every few seconds the scheduler's leader calls :func:`seal`: the heads (last seq and hash) of
the chains that moved since the last checkpoint become one append-only ``audit_checkpoints``
row, whose hash covers those heads and the previous checkpoint's hash. Each head's hash covers
its chain up to it, so a checkpoint seals every event written before it. The hash is signed
with Ed25519 by ``MILLRACE_AUDIT_KEY``, a private key the database never holds: whoever can
rewrite the database can recompute every event's hash, but not sign a checkpoint that agrees,
and verifying needs only the public key. Each checkpoint may also be appended, as a JSON line,
to a file outside the database (``MILLRACE_AUDIT_CHECKPOINT_FILE``), which is what catches the
newest checkpoints being dropped.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import Connection, Engine, bindparam, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB

from orchestrator.store.tables import audit_checkpoints, audit_purges

MOST_HEADS = 10_000  # chains sealed by one checkpoint; the rest wait for the next one


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    at: dt.datetime
    heads: list[dict[str, Any]]  # [{"chain", "seq", "hash"}], by chain
    events: int
    prev_hash: str | None
    hash: str
    signature: str

    def line(self) -> str:
        """The checkpoint as one JSON line of the file kept outside the database."""
        return json.dumps({"seq": self.seq, "at": instant(self.at), "events": self.events, "chains": len(self.heads),
                           "prev_hash": self.prev_hash, "hash": self.hash, "signature": self.signature})


def checkpoint_hash(prev_hash: str | None, seq: int, at: dt.datetime, heads: list[dict[str, Any]]) -> str:
    """What a checkpoint's hash covers: the one before it, its place, its time and the heads it seals."""
    canonical = json.dumps([prev_hash or "", seq, instant(at), heads], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def instant(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_key_pair() -> tuple[str, str]:
    """A fresh (private, public) Ed25519 pair, each the base64 of its 32 raw bytes."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()


def private_key(encoded: str) -> Ed25519PrivateKey:
    """``MILLRACE_AUDIT_KEY`` as a key (ValueError when it is not one)."""
    return Ed25519PrivateKey.from_private_bytes(_raw(encoded, "MILLRACE_AUDIT_KEY"))


def public_key(encoded: str) -> Ed25519PublicKey:
    """``MILLRACE_AUDIT_PUBLIC_KEY`` as a key (ValueError when it is not one)."""
    return Ed25519PublicKey.from_public_bytes(_raw(encoded, "MILLRACE_AUDIT_PUBLIC_KEY"))


def _raw(encoded: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{name} must be the base64 of 32 bytes, as `millrace audit keygen` prints")
    return raw


def sign(key: Ed25519PrivateKey, digest: str) -> str:
    """The key's signature of a hash (a checkpoint's or a purge's), in base64."""
    return base64.b64encode(key.sign(digest.encode())).decode()


def signed_by(key: Ed25519PublicKey, digest: str, signature: str) -> bool:
    """Whether ``signature`` is the key's signature of a checkpoint's (or a purge's) hash."""
    try:
        key.verify(base64.b64decode(signature, validate=True), digest.encode())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


_MOVED = text("""SELECT chain, seq, hash, sealed_seq FROM audit_chains WHERE moved
                 ORDER BY chain LIMIT :most FOR UPDATE SKIP LOCKED""")
_SEALED = text("""UPDATE audit_chains c SET sealed_seq = h.seq, moved = false
                  FROM jsonb_to_recordset(:heads) AS h(chain text, seq bigint) WHERE c.chain = h.chain""").bindparams(
    bindparam("heads", type_=JSONB))


def seal(engine: Engine, key: Ed25519PrivateKey, file: Path | None = None) -> Checkpoint | None:
    """Seal the chains that moved since the last checkpoint into the next one (None: none moved).

    Chains a writer holds right now are skipped (their head is about to move): the next
    checkpoint seals them, and no writer waits for this one longer than its short transaction."""
    with engine.begin() as conn:
        moved = conn.execute(_MOVED, {"most": MOST_HEADS}).all()
        if not moved:
            return None
        last = conn.execute(select(audit_checkpoints.c.seq, audit_checkpoints.c.hash)
                            .order_by(audit_checkpoints.c.seq.desc()).limit(1)).first()
        if last is None:  # none left (or none yet): go on from the last one retention purged
            last = conn.execute(select(audit_purges.c.through_checkpoint.label("seq"),
                                       audit_purges.c.checkpoint_hash.label("hash"))
                                .order_by(audit_purges.c.seq.desc()).limit(1)).first()
        seq, prev_hash = (last.seq + 1, last.hash) if last else (1, None)
        at = dt.datetime.now(dt.UTC)
        heads = [{"chain": m.chain, "seq": m.seq, "hash": m.hash} for m in moved]
        digest = checkpoint_hash(prev_hash, seq, at, heads)
        signature = sign(key, digest)
        checkpoint = Checkpoint(seq, at, heads, sum(m.seq - m.sealed_seq for m in moved), prev_hash, digest, signature)
        conn.execute(insert(audit_checkpoints).values(seq=seq, at=at, heads=heads, events=checkpoint.events,
                                                      prev_hash=prev_hash, hash=digest, signature=signature))
        conn.execute(_SEALED, {"heads": heads})
    if file is not None:  # after the commit: the file never holds a checkpoint the database has not
        with file.open("a", encoding="utf-8") as out:
            out.write(checkpoint.line() + "\n")
    return checkpoint


def walk(conn: Connection, batch: int = 1000) -> Iterator[Checkpoint]:
    """Every stored checkpoint, in order."""
    after = 0
    while True:
        rows = conn.execute(select(audit_checkpoints).where(audit_checkpoints.c.seq > after)
                            .order_by(audit_checkpoints.c.seq).limit(batch)).all()
        if not rows:
            return
        for row in rows:
            yield Checkpoint(row.seq, row.at, row.heads, row.events, row.prev_hash, row.hash, row.signature)
        after = rows[-1].seq


# The first head a checkpoint sealed that its chain no longer has: the event at that seq is
# gone or has another hash (an event at or before it was rewritten and the chain recomputed).
FIRST_UNSEALED_HEAD = text("""
SELECT c.seq AS checkpoint, h.chain, h.seq, e.id AS event_id, e.hash AS actual
FROM audit_checkpoints c CROSS JOIN LATERAL jsonb_to_recordset(c.heads) AS h(chain text, seq bigint, hash text)
LEFT JOIN audit_events e ON e.chain = h.chain AND e.seq = h.seq
WHERE e.hash IS DISTINCT FROM h.hash ORDER BY c.seq, h.chain LIMIT 1
""")


def read_file(file: Path) -> list[dict[str, Any]]:
    """The checkpoints kept in the file outside the database, in the order they were appended."""
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
