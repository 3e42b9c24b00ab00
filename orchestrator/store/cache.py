"""The step cache: a result kept for the same step, code and arguments within a TTL."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import (
    Engine,
    select,
)

from orchestrator.store.sql import dialect_insert, now
from orchestrator.store.tables import (
    step_cache,
)


def cache_key(flow_id: str, path: str, code: str, args: dict[str, Any]) -> str:
    blob = json.dumps([flow_id, path, code, args], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_result(engine: Engine, key: str) -> tuple[bool, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(step_cache.c.result).where(
            step_cache.c.key == key, step_cache.c.expires_at > now())).first()
    return (True, row.result) if row else (False, None)


def store_cached_result(engine: Engine, key: str, result: Any, ttl: float) -> None:
    expires = now() + dt.timedelta(seconds=ttl)
    stmt = dialect_insert(engine, step_cache).values(key=key, result=result, expires_at=expires)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"result": result, "expires_at": expires})
    with engine.begin() as conn:
        conn.execute(stmt)

