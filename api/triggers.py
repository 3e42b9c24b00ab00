"""/api/v1/event-triggers: flows' event triggers (declared in the flow, consumed by
`millrace listener`), the state of each connection, and every message each received."""
from __future__ import annotations

import datetime as dt
from typing import Literal

from flask import Blueprint, Response, url_for
from pydantic import Field

from api import context
from api.auth import requires
from api.responses import EventTrigger, EventTriggerLinks, EventTriggerPage, TriggerFire, TriggerFirePage
from api.schemas import Paged, answer, fails, query, returns
from orchestrator.errors import NotFound, Problem, ValidationError
from orchestrator.store import event_triggers
from orchestrator.store.access import Permission
from orchestrator.store.event_triggers import EventTriggerRow

blueprint = Blueprint("event_triggers", __name__, url_prefix="/event-triggers")


class TriggerFilter(Paged):
    flow: str | None = Field(default=None, max_length=200, description="only this flow's event triggers")


class TriggerFireFilter(Paged):
    status: Literal["started", "refused"] | None = Field(default=None, description="only fires with this outcome")


def trigger_answer(row: EventTriggerRow, now: dt.datetime) -> EventTrigger:
    return EventTrigger(
        id=row.id, flow=row.flow_id, trigger=row.trigger_id, kind=row.kind, source=row.source, inputs=row.inputs,
        enabled=row.enabled, state=row.state_now(now), state_detail=row.state_detail, state_at=row.state_at,
        fired=row.fired, refused=row.refused,
        links=EventTriggerLinks(self=url_for("v1.event_triggers.get_event_trigger", trigger_id=row.id),
                                fires=url_for("v1.event_triggers.event_trigger_fires", trigger_id=row.id)))


def _found(trigger_id: str) -> EventTriggerRow:
    row = event_triggers.get(context.engine(), trigger_id)
    if row is None:
        raise NotFound(f"no event trigger {trigger_id}; GET /api/v1/event-triggers lists them")
    return row


@blueprint.get("")
@requires(Permission.READ)
@returns(200, EventTriggerPage)
@query(TriggerFilter)
def list_event_triggers(query: TriggerFilter) -> Response:
    """Event triggers of live flows by id, filtered by `flow`, with their connection state."""
    rows = event_triggers.listing(context.engine(), flow_id=query.flow, after=query.cursor or "", limit=query.limit)
    now = dt.datetime.now(dt.UTC)
    return answer(EventTriggerPage(items=[trigger_answer(r, now) for r in rows],
                                   next_cursor=rows[-1].id if len(rows) == query.limit else None))


@blueprint.get("/<trigger_id>")
@requires(Permission.READ)
@returns(200, EventTrigger)
@fails(404)
def get_event_trigger(trigger_id: str) -> Response:
    """An event trigger and what the listener last reported of its connection."""
    return answer(trigger_answer(_found(trigger_id), dt.datetime.now(dt.UTC)))


@blueprint.get("/<trigger_id>/fires")
@requires(Permission.READ)
@returns(200, TriggerFirePage)
@fails(404)
@query(TriggerFireFilter)
def event_trigger_fires(trigger_id: str, query: TriggerFireFilter) -> Response:
    """The messages it received, newest first: the run each started, or why it started none."""
    _found(trigger_id)
    before = None
    if query.cursor:
        if not (query.cursor.isascii() and query.cursor.isdigit() and len(query.cursor) <= 19):
            raise ValidationError([Problem("cursor", "not a cursor this API returned; pass a page's `next_cursor`")])
        before = int(query.cursor)
    rows = event_triggers.fires_of(context.engine(), trigger_id, before=before, status=query.status,
                                   limit=query.limit)
    items = [TriggerFire(id=r["id"], message_key=r["message_key"], status=r["status"], run_id=r["run_id"],
                         reason=r["reason"], topic=r["topic"], recorded_at=r["recorded_at"]) for r in rows]
    return answer(TriggerFirePage(items=items, next_cursor=str(rows[-1]["id"]) if len(rows) == query.limit else None))
