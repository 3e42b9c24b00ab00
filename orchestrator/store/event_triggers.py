"""The statements on event triggers and their fires: a flow's declared event triggers as
rows (rewritten in the transaction that saves it), what the listener reports of each
connection, and one fire per message received."""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, exists, func, insert, select, update

from orchestrator.definitions.events import EventTrigger
from orchestrator.store.sql import now
from orchestrator.store.tables import event_triggers, flows, trigger_fires

REPORT_S = 15.0  # a connected lane says so again this often
STALE_AFTER = dt.timedelta(seconds=3 * REPORT_S)  # a "connected" older than this is not believed


@dataclass(frozen=True)
class EventTriggerRow:
    """An event trigger as stored: what the listener consumes and the API shows."""

    id: str
    flow_id: str
    trigger_id: str
    kind: str
    source: dict[str, Any]
    inputs: dict[str, Any] | None
    enabled: bool
    updated_at: dt.datetime
    state: str
    state_detail: str | None
    state_at: dt.datetime | None
    fired: int
    refused: int

    def state_now(self, now: dt.datetime) -> str:
        """The state as far as anyone can tell now: a "connected" no listener has repeated
        within ``STALE_AFTER`` is "stale" (no listener runs, or it stopped leading)."""
        if self.state == "connected" and (self.state_at is None or now - _aware(self.state_at) > STALE_AFTER):
            return "stale"
        return self.state


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)  # SQLite gives naive times back


def event_trigger_id(flow_id: str, trigger_id: str) -> str:
    """The stable id of a flow's event trigger: its fires, and its broker-side names
    (queue, durable consumer, client id, outbox table), are keyed by it."""
    return "e-" + hashlib.sha256(f"{flow_id}#{trigger_id}".encode()).hexdigest()[:20]


def broker_name(trigger: str, kind: str) -> str:
    """What a trigger is called on its broker (its queue, client id, consumer group, durable
    consumer): stable across restarts, so a new connection resumes where the last one left."""
    name = f"millrace.trigger.{trigger}"
    return name.replace(".", "-") if kind == "nats" else name  # no dots in JetStream names


def sync_event_triggers(conn: Connection, flow_id: str, declared: list[EventTrigger]) -> None:
    """Make the flow's event trigger rows what its latest version declares; a trigger whose
    declaration did not change keeps its state and counts, one that changed is re-read by
    the listener (its ``updated_at`` moves)."""
    at = now()
    existing = {row.trigger_id: row for row in conn.execute(
        select(event_triggers).where(event_triggers.c.flow_id == flow_id))}
    wanted = {t.id: t for t in declared}
    gone = [row.id for trigger_id, row in existing.items() if trigger_id not in wanted]
    if gone:
        conn.execute(delete(event_triggers).where(event_triggers.c.id.in_(gone)))
    for trigger_id, trigger in wanted.items():
        values = {"kind": trigger.kind, "source": trigger.source.model_dump(exclude_none=True),
                  "inputs": trigger.inputs, "enabled": trigger.enabled}
        row = existing.get(trigger_id)
        if row is None:
            conn.execute(insert(event_triggers).values(
                id=event_trigger_id(flow_id, trigger_id), flow_id=flow_id, trigger_id=trigger_id, updated_at=at,
                state="pending", fired=0, refused=0, **values))
        elif any(getattr(row, k) != v for k, v in values.items()):
            conn.execute(update(event_triggers).where(event_triggers.c.id == row.id).values(
                updated_at=at, state="pending", state_detail=None, **values))


def _live() -> Any:
    return exists(select(flows.c.flow_id).where(flows.c.flow_id == event_triggers.c.flow_id,
                                                flows.c.deleted_at.is_(None)))


def active(engine: Engine) -> list[EventTriggerRow]:
    """The enabled event triggers of live flows: what the listener consumes."""
    with engine.connect() as conn:
        rows = conn.execute(select(event_triggers).where(event_triggers.c.enabled.is_(True), _live())
                            .order_by(event_triggers.c.id))
        return [EventTriggerRow(**row._mapping) for row in rows]


def listing(engine: Engine, *, flow_id: str | None = None, after: str = "",
            limit: int | None = None) -> list[EventTriggerRow]:
    """Event triggers by id (of live flows), ``limit`` after ``after``."""
    where = [event_triggers.c.id > after, _live()]
    if flow_id is not None:
        where.append(event_triggers.c.flow_id == flow_id)
    with engine.connect() as conn:
        rows = conn.execute(select(event_triggers).where(*where).order_by(event_triggers.c.id).limit(limit))
        return [EventTriggerRow(**row._mapping) for row in rows]


def get(engine: Engine, trigger: str) -> EventTriggerRow | None:
    with engine.connect() as conn:
        row = conn.execute(select(event_triggers).where(event_triggers.c.id == trigger, _live())).first()
    return None if row is None else EventTriggerRow(**row._mapping)


def report_state(engine: Engine, trigger: str, state: str, detail: str | None = None) -> None:
    """What the listener knows of a trigger's connection now (``state_at``: when it said so)."""
    with engine.begin() as conn:
        conn.execute(update(event_triggers).where(event_triggers.c.id == trigger).values(
            state=state, state_detail=None if detail is None else detail[:2000], state_at=now()))


# --- fires --------------------------------------------------------------------------------

def fire_by_key(conn: Connection, trigger: str, key: str) -> Any:
    return conn.execute(select(trigger_fires).where(trigger_fires.c.trigger == trigger,
                                                    trigger_fires.c.message_key == key)).first()


def fire_by_digest(conn: Connection, trigger: str, digest: str, since: dt.datetime) -> Any:
    """A fire of a message with the same content recorded since ``since``, after taking the
    digest's lock until commit (two deliveries of one message decide one at a time)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"millrace-event:{trigger}:{digest}"))))
    return conn.execute(select(trigger_fires).where(
        trigger_fires.c.trigger == trigger, trigger_fires.c.digest == digest,
        trigger_fires.c.recorded_at >= since).order_by(trigger_fires.c.id.desc()).limit(1)).first()


def record_fire(conn: Connection, trigger: str, key: str, *, status: str, run_id: str | None = None,
                reason: str | None = None, topic: str | None = None, digest: str | None = None) -> None:
    """One fire, and the trigger's count of fired or refused messages, in the caller's transaction."""
    conn.execute(insert(trigger_fires).values(
        trigger=trigger, message_key=key, digest=digest, status=status, run_id=run_id,
        reason=None if reason is None else reason[:4000], topic=topic, recorded_at=now()))
    counter = event_triggers.c.fired if status == "started" else event_triggers.c.refused
    conn.execute(update(event_triggers).where(event_triggers.c.id == trigger).values({counter: counter + 1}))


def fires_of(engine: Engine, trigger: str, *, before: int | None = None, status: str | None = None,
             limit: int | None = 100) -> list[dict[str, Any]]:
    """A trigger's fires, newest first, ``limit`` before the fire id ``before``."""
    where = [trigger_fires.c.trigger == trigger]
    if before is not None:
        where.append(trigger_fires.c.id < before)
    if status is not None:
        where.append(trigger_fires.c.status == status)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(trigger_fires).where(and_(*where))
                                              .order_by(trigger_fires.c.id.desc()).limit(limit)).mappings()]
