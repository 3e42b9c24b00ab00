"""Flows and scripts: immutable versions under a head row, read by key and number."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from orchestrator.definitions.flow import Flow
from orchestrator.errors import Conflict, NotFound
from orchestrator.store.audit import audit
from orchestrator.store.database import autocommit
from orchestrator.store.sql import now
from orchestrator.store.tables import (
    flow_versions,
    flows,
    script_versions,
    scripts,
)
from orchestrator.store.triggers import sync_triggers


@dataclass(frozen=True)
class Versioned:
    """A kind of definition kept as immutable versions: its head table and versions table."""

    noun: str
    heads: Any
    versions: Any
    key: str  # the column naming one definition

    def key_of(self, table: Any) -> Any:
        return table.c[self.key]


FLOWS = Versioned("flow", flows, flow_versions, "flow_id")


SCRIPTS = Versioned("script", scripts, script_versions, "path")


def store_flow(engine: Engine, flow: Flow, source: str, actor: str) -> int:
    """Store ``flow`` (checked and locked already) as a new version unless the latest version
    is the same document; its triggers become schedules and trigger rows in the same
    transaction."""
    document = flow.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return save_version(engine, FLOWS, flow.id, {"document": document, "source": source}, actor,
                        same_as=document, also=lambda conn: sync_triggers(conn, flow))


def save_version(engine: Engine, kind: Versioned, key: str, values: dict[str, Any], actor: str, *,
                 same_as: Any, also: Callable[[Connection], None] | None = None) -> int:
    """Store ``values`` as the next version of ``key``, unless the latest version was saved
    with an equal ``same_as`` (then its number is returned, and a deleted definition is
    restored)."""
    digest = hashlib.sha256(json.dumps(same_as, sort_keys=True).encode()).hexdigest()
    heads, versions = kind.heads, kind.versions
    unchanged = _unchanged(engine, kind, key, digest)
    if unchanged is not None:
        return unchanged
    for _ in range(3):
        try:
            with engine.begin() as conn:
                latest = conn.execute(
                    select(versions.c.version, versions.c.digest).where(kind.key_of(versions) == key)
                    .order_by(versions.c.version.desc()).limit(1)
                ).first()
                if latest and latest.digest == digest:
                    restored = conn.execute(update(heads).where(kind.key_of(heads) == key,
                                                                heads.c.deleted_at.is_not(None))
                                            .values(deleted_at=None, updated_at=now())).rowcount
                    if restored and also is not None:  # saving again restores it, triggers included
                        also(conn)
                    return latest.version
                version = latest.version + 1 if latest else 1
                at = now()
                conn.execute(insert(versions).values(
                    {kind.key: key, "version": version, "digest": digest, "created_at": at, **values}))
                if latest:
                    conn.execute(update(heads).where(kind.key_of(heads) == key).values(
                        latest_version=version, updated_at=at, deleted_at=None))
                else:
                    conn.execute(insert(heads).values(
                        {kind.key: key, "latest_version": version, "created_at": at, "updated_at": at}))
                if also is not None:
                    also(conn)
                audit(conn, actor, f"{kind.noun}.saved", f"{kind.noun}:{key}", version=version)
                return version
        except IntegrityError:
            continue  # another writer took this version number: read again
    raise Conflict(f"{kind.noun} {key} is being saved concurrently; try again")


def _unchanged(engine: Engine, kind: Versioned, key: str, digest: str) -> int | None:
    """The latest version's number when it holds this document and is not deleted: what
    saving it again (every run started from a document does) finds, in one read."""
    heads, versions = kind.heads, kind.versions
    live = select(kind.key_of(heads)).where(kind.key_of(heads) == key, heads.c.deleted_at.is_(None))
    with autocommit(engine).connect() as conn:  # one statement: no BEGIN and ROLLBACK around it
        latest = conn.execute(
            select(versions.c.version, versions.c.digest).where(kind.key_of(versions) == key, exists(live))
            .order_by(versions.c.version.desc()).limit(1)).first()
    return latest.version if latest is not None and latest.digest == digest else None


def load_flow_document(engine: Engine, flow_id: str, version: int | None = None) -> tuple[int, dict]:
    """The stored document of a flow version (the latest when ``version`` is None)."""
    query = select(flow_versions.c.version, flow_versions.c.document).where(flow_versions.c.flow_id == flow_id)
    query = query.where(flow_versions.c.version == version) if version else query.order_by(
        flow_versions.c.version.desc()).limit(1)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"flow '{flow_id}'" + (f" version {version}" if version else "") + " does not exist")
    return row.version, row.document


def get_version(engine: Engine, kind: Versioned, key: str, version: int | None = None) -> dict[str, Any]:
    """A saved version (the latest when ``version`` is None; a deleted definition has no
    latest version, but its versions can still be read by number)."""
    versions = kind.versions
    query = select(versions).where(kind.key_of(versions) == key)
    if not version:
        live = select(kind.key_of(kind.heads)).where(kind.key_of(kind.heads) == key,
                                                      kind.heads.c.deleted_at.is_(None))
        query = query.where(exists(live)).order_by(versions.c.version.desc()).limit(1)
    else:
        query = query.where(versions.c.version == version)
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"{kind.noun} '{key}'" + (f" version {version}" if version else "") + " does not exist")
    return dict(row)


def get_flow_version(engine: Engine, flow_id: str, version: int | None = None) -> dict[str, Any]:
    return get_version(engine, FLOWS, flow_id, version)


def delete_versioned(engine: Engine, kind: Versioned, key: str, actor: str) -> None:
    """Hide a definition from listings and new use; its versions stay for the runs that used them."""
    with engine.begin() as conn:
        changed = conn.execute(update(kind.heads).where(kind.key_of(kind.heads) == key,
                                                        kind.heads.c.deleted_at.is_(None))
                               .values(deleted_at=now())).rowcount
        if not changed:
            raise NotFound(f"{kind.noun} '{key}' does not exist")
        if kind is FLOWS:
            sync_triggers(conn, None, key)  # a deleted flow has no schedules or triggers
        audit(conn, actor, f"{kind.noun}.deleted", f"{kind.noun}:{key}")


def newest_version(engine: Engine, kind: Versioned, key: str) -> int:
    """The highest version number saved, deleted or not; 0 if none."""
    with engine.connect() as conn:
        return conn.execute(select(func.max(kind.versions.c.version))
                            .where(kind.key_of(kind.versions) == key)).scalar() or 0


def versions_of(engine: Engine, kind: Versioned, key: str, text_column: str, *, after: int = 0,
                limit: int = 50) -> list[dict[str, Any]]:
    """The number, time and ``text_column`` (the text diffs are made of) of version ``after``
    (when there is one: the text the first diff is made against) and of ``limit`` versions after it."""
    versions = kind.versions
    with engine.connect() as conn:
        rows = conn.execute(select(versions.c.version, versions.c.created_at, versions.c[text_column])
                            .where(kind.key_of(versions) == key, versions.c.version >= after)
                            .order_by(versions.c.version).limit(limit + (1 if after else 0))).mappings()
        found = [dict(r) for r in rows]
        if not found and not conn.execute(select(versions.c.version).where(kind.key_of(versions) == key)
                                          .limit(1)).first():
            raise NotFound(f"{kind.noun} '{key}' does not exist")
    return found


def list_heads(engine: Engine, kind: Versioned, *, prefix: str = "", after: str = "",
               limit: int = 50) -> list[dict[str, Any]]:
    """Live definitions ordered by key, ``limit`` after the key ``after`` (a stable cursor)."""
    key = kind.key_of(kind.heads)
    query = select(kind.heads).where(kind.heads.c.deleted_at.is_(None), key > after)
    if prefix:
        query = query.where(key.startswith(prefix, autoescape=True))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(key).limit(limit)).mappings()]



def latest_versions(engine: Engine, kind: Versioned, keys: set[str]) -> dict[str, int]:
    """The latest version number of each live definition among ``keys``."""
    heads = kind.heads
    with engine.connect() as conn:
        rows = conn.execute(select(kind.key_of(heads), heads.c.latest_version)
                            .where(kind.key_of(heads).in_(keys), heads.c.deleted_at.is_(None)))
        return {row[0]: row.latest_version for row in rows}
