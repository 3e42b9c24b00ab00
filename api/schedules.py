"""/api/v1/schedules: cron schedules of flows, their upcoming and decided slots, backfills."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, url_for
from pydantic import Field

from api import context
from api.auth import principal, requires
from api.responses import Backfilled, Fire, FirePage, Schedule, ScheduleLinks, SchedulePage
from api.schemas import (
    Backfill,
    NewSchedule,
    Paged,
    Query,
    ScheduleChanges,
    Time,
    accepts,
    answer,
    fails,
    query,
    returns,
)
from orchestrator.definitions.cron import Cron
from orchestrator.errors import Problem, ValidationError
from orchestrator.services import scheduling as schedules
from orchestrator.store import schedules as schedule_rows
from orchestrator.store.access import Permission

blueprint = Blueprint("schedules", __name__, url_prefix="/schedules")
MAX_NEXT = 100


class Upcoming(Query):
    next: int = Field(default=0, ge=0, le=MAX_NEXT, description="add the next N fire times")


class ScheduleFilter(Paged):
    flow: str | None = Field(default=None, max_length=200, description="only this flow's schedules")


class FireFilter(Paged):
    before: Time | None = Field(default=None, description="only slots before this time (ISO 8601; UTC if no "
                                                          "offset); `cursor` pages from there")


def _schedule_answer(row: dict[str, Any], upcoming: int = 0) -> Schedule:
    following = None
    if upcoming:
        cron = Cron(row["cron"], row["timezone"])
        start = max(row["next_fire_at"] - dt.timedelta(microseconds=1), dt.datetime.now(dt.UTC))
        following = cron.upcoming(start, upcoming)
    return Schedule(
        id=row["id"], flow=row["flow_id"], trigger=row["trigger_id"], cron=row["cron"], timezone=row["timezone"],
        inputs=row["inputs"], labels=row["labels"] or {}, catchup=row["catchup"],
        max_catchup=row["max_catchup"], overlap=row["overlap"],
        enabled=row["enabled"], paused_until=row["paused_until"], next_fire_at=row["next_fire_at"],
        declared_in_flow=row["trigger_id"] is not None, next=following,
        links=ScheduleLinks(self=url_for("v1.schedules.get_schedule", schedule_id=row["id"]),
                            fires=url_for("v1.schedules.schedule_fires", schedule_id=row["id"])))


@blueprint.post("")
@requires(Permission.DEFINE)
@returns(201, Schedule)
@fails(400, 404, 409)
@accepts(NewSchedule)
def create_schedule(body: NewSchedule) -> Response:
    """Create a schedule of a saved flow; it fires from its next slot on."""
    spec = schedules.ScheduleSpec(flow_id=body.flow, cron=body.cron, timezone=body.timezone, inputs=body.inputs,
                                  labels=body.labels, catchup=body.catchup, max_catchup=body.max_catchup,
                                  overlap=body.overlap,
                                  enabled=body.enabled, paused_until=body.paused_until)
    schedule_id = schedules.create_schedule(context.engine(), spec, principal().actor)
    return answer(_schedule_answer(schedules.get_schedule(context.engine(), schedule_id), upcoming=5), 201)


@blueprint.get("")
@requires(Permission.READ)
@returns(200, SchedulePage)
@query(ScheduleFilter)
def list_schedules(query: ScheduleFilter) -> Response:
    """Schedules by id, filtered by `flow`."""
    rows = schedule_rows.list_schedules(context.engine(), flow_id=query.flow, after=query.cursor or "",
                                        limit=query.limit)
    return answer(SchedulePage(items=[_schedule_answer(r) for r in rows],
                               next_cursor=rows[-1]["id"] if len(rows) == query.limit else None))


@blueprint.get("/<schedule_id>")
@requires(Permission.READ)
@returns(200, Schedule)
@query(Upcoming)
def get_schedule(schedule_id: str, query: Upcoming) -> Response:
    """A schedule; `?next=N` adds its next N fire times."""
    return answer(_schedule_answer(schedules.get_schedule(context.engine(), schedule_id), upcoming=query.next))


@blueprint.patch("/<schedule_id>")
@requires(Permission.DEFINE)
@returns(200, Schedule)
@fails(400, 409)
@accepts(ScheduleChanges)
def update_schedule(schedule_id: str, body: ScheduleChanges) -> Response:
    """Change, pause (``enabled: false`` or ``paused_until``) or resume a schedule."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise ValidationError([Problem("", "name at least one field to change")])
    schedules.update_schedule(context.engine(), schedule_id, changes, principal().actor)
    return answer(_schedule_answer(schedules.get_schedule(context.engine(), schedule_id), upcoming=5))


@blueprint.delete("/<schedule_id>")
@requires(Permission.DEFINE)
@returns(204)
def delete_schedule(schedule_id: str) -> Response:
    """Delete a schedule made through the API (a declared one is removed from its flow)."""
    schedules.delete_schedule(context.engine(), schedule_id, principal().actor)
    return Response(status=204)


@blueprint.get("/<schedule_id>/fires")
@requires(Permission.READ)
@returns(200, FirePage)
@query(FireFilter)
def schedule_fires(schedule_id: str, query: FireFilter) -> Response:
    """Decided slots, newest first: started (with the run), skipped, missed or queued, and why."""
    schedules.get_schedule(context.engine(), schedule_id)
    boundary = _fires_cursor(query.cursor) or query.before
    rows = schedule_rows.fires_of(context.engine(), schedule_id, before=boundary, limit=query.limit)
    items = [Fire(fire_at=r["fire_at"], status=r["status"], run_id=r["run_id"], reason=r["reason"],
                  recorded_at=r["recorded_at"], recorded_by=r["recorded_by"]) for r in rows]
    last = rows[-1]["fire_at"] if len(rows) == query.limit else None
    return answer(FirePage(items=items, next_cursor=str((last - _EPOCH) // _MICRO) if last else None))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def _fires_cursor(raw: str | None) -> dt.datetime | None:
    """The page boundary from ``next_cursor``: the last slot shown, in microseconds."""
    if not raw:
        return None
    try:
        if raw.isascii() and raw.isdigit() and len(raw) <= 20:
            return _EPOCH + int(raw) * _MICRO
    except OverflowError:
        pass
    raise ValidationError([Problem("cursor", "not a cursor this API returned")])


@blueprint.post("/<schedule_id>/backfill")
@requires(Permission.OPERATE)
@returns(202, Backfilled)
@fails(409)
@accepts(Backfill)
def backfill(schedule_id: str, body: Backfill) -> Response:
    """Run every slot in [start, end] that has not run (at most 1000)."""
    if body.end < body.start:
        raise ValidationError([Problem("end", "comes before start")])
    engine = context.engine()
    started, done = schedules.backfill(engine, schedule_id, body.start, body.end, principal().actor)
    for run in started:
        context.publisher().deliver(run.owed)
    return answer(Backfilled(schedule=schedule_id, started=[r.run_id for r in started], already_done=done), 202)


