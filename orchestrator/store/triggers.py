"""A flow's declared triggers as rows: its cron triggers as schedules, its flow triggers, its
event triggers (``event_triggers.py``)."""
from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    exists,
    insert,
    select,
    update,
)

from orchestrator.definitions.cron import parse_cron
from orchestrator.definitions.events import EventTrigger
from orchestrator.definitions.flow import Flow
from orchestrator.definitions.triggers import CronTrigger, FlowTrigger
from orchestrator.store.event_triggers import sync_event_triggers
from orchestrator.store.sql import now
from orchestrator.store.tables import (
    flow_triggers,
    flow_versions,
    flows,
    schedules,
)


def sync_triggers(conn: Connection, flow: Flow | None, flow_id: str | None = None) -> None:
    """Make the flow's declared schedules and flow triggers what its latest version says
    (``flow`` None: it was deleted, so it has none). A schedule whose cron, zone and state
    did not change keeps its next slot."""
    flow_id = flow.id if flow is not None else flow_id
    declared = {t.id: t for t in (flow.triggers if flow is not None else [])}
    crons = {i: t for i, t in declared.items() if isinstance(t, CronTrigger)}
    at = now()
    existing = {row.trigger_id: row for row in conn.execute(select(schedules).where(
        schedules.c.flow_id == flow_id, schedules.c.trigger_id.is_not(None)))}
    gone = [row.id for trigger_id, row in existing.items() if trigger_id not in crons]
    if gone:
        conn.execute(delete(schedules).where(schedules.c.id.in_(gone)))
    declared_before = _declared_enabled(conn, flow_id) if existing else {}
    for trigger_id, trigger in crons.items():
        values = {"cron": trigger.cron, "timezone": trigger.timezone, "inputs": trigger.inputs,
                  "labels": trigger.labels or None, "catchup": trigger.catchup,
                  "max_catchup": trigger.max_catchup, "overlap": trigger.overlap,
                  "enabled": trigger.enabled, "updated_at": at}
        row = existing.get(trigger_id)
        if row is not None and declared_before.get(trigger_id, trigger.enabled) == trigger.enabled:
            values["enabled"] = row.enabled  # the document did not change it: a pause made through the API stays
        if row is None:
            conn.execute(insert(schedules).values(
                id=declared_schedule_id(flow_id, trigger_id), flow_id=flow_id, trigger_id=trigger_id,
                next_fire_at=parse_cron(trigger.cron, trigger.timezone).next_after(at), created_at=at, **values))
        elif any(getattr(row, k) != v for k, v in values.items() if k != "updated_at"):
            if (row.cron, row.timezone, row.enabled) != (trigger.cron, trigger.timezone, trigger.enabled):
                values["next_fire_at"] = parse_cron(trigger.cron, trigger.timezone).next_after(at)
            conn.execute(update(schedules).where(schedules.c.id == row.id).values(**values))
    conn.execute(delete(flow_triggers).where(flow_triggers.c.flow_id == flow_id))
    rows = [{"flow_id": flow_id, "trigger_id": t.id, "upstream": t.flow, "statuses": list(t.status),
             "inputs": t.inputs} for t in declared.values() if isinstance(t, FlowTrigger)]
    if rows:
        conn.execute(insert(flow_triggers), rows)
    sync_event_triggers(conn, flow_id, [t for t in declared.values() if isinstance(t, EventTrigger)])


def _declared_enabled(conn: Connection, flow_id: str) -> dict[str, bool]:
    """What the version before the newest one declared as each cron trigger's `enabled`."""
    document = conn.execute(select(flow_versions.c.document).where(flow_versions.c.flow_id == flow_id)
                            .order_by(flow_versions.c.version.desc()).offset(1).limit(1)).scalar()
    return {t["id"]: t.get("enabled", True) for t in (document or {}).get("triggers", [])
            if isinstance(t, dict) and "cron" in t and "id" in t}


def declared_schedule_id(flow_id: str, trigger_id: str) -> str:
    """The stable id of the schedule a flow's cron trigger declares."""
    return "f-" + hashlib.sha256(f"{flow_id}#{trigger_id}".encode()).hexdigest()[:20]


def downstream_triggers(engine: Engine, flow_id: str, status: str) -> list[Any]:
    """The flow triggers of live flows that a run of ``flow_id`` ending in ``status`` fires."""
    live = select(flows.c.flow_id).where(flows.c.flow_id == flow_triggers.c.flow_id, flows.c.deleted_at.is_(None))
    with engine.connect() as conn:
        return [row for row in conn.execute(select(flow_triggers).where(
            flow_triggers.c.upstream == flow_id, exists(live))) if status in row.statuses]

