"""/api/v1/schedules: cron schedules of flows, their upcoming and decided slots, backfills."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api import context, versioned
from api.auth import principal, requires
from api.schemas import Backfill, NewSchedule, ScheduleChanges, accepts, query_number, responds
from orchestrator.definitions.cron import Cron
from orchestrator.errors import Problem, ValidationError
from orchestrator.services import scheduling as schedules
from orchestrator.store import schedules as schedule_rows
from orchestrator.store.access import Permission

blueprint = Blueprint("schedules", __name__, url_prefix="/schedules")
MAX_NEXT = 100


def _schedule_json(row: dict[str, Any], upcoming: int = 0) -> dict[str, Any]:
    out = {
        "id": row["id"], "flow": row["flow_id"], "trigger": row["trigger_id"], "cron": row["cron"],
        "timezone": row["timezone"], "inputs": row["inputs"], "catchup": row["catchup"],
        "max_catchup": row["max_catchup"], "overlap": row["overlap"], "enabled": row["enabled"],
        "paused_until": _iso(row["paused_until"]), "next_fire_at": _iso(row["next_fire_at"]),
        "declared_in_flow": row["trigger_id"] is not None,
        "links": {"self": url_for("v1.schedules.get_schedule", schedule_id=row["id"]),
                  "fires": url_for("v1.schedules.schedule_fires", schedule_id=row["id"])},
    }
    if upcoming:
        cron = Cron(row["cron"], row["timezone"])
        start = max(row["next_fire_at"] - dt.timedelta(microseconds=1), dt.datetime.now(dt.UTC))
        out["next"] = [_iso(t) for t in cron.upcoming(start, upcoming)]
    return out


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@blueprint.post("")
@requires(Permission.DEFINE)
@responds(201)
@accepts(NewSchedule)
def create_schedule(body: NewSchedule) -> Response:
    """Create a schedule of a saved flow; it fires from its next slot on."""
    spec = schedules.ScheduleSpec(flow_id=body.flow, cron=body.cron, timezone=body.timezone, inputs=body.inputs,
                                  catchup=body.catchup, max_catchup=body.max_catchup, overlap=body.overlap,
                                  enabled=body.enabled, paused_until=body.paused_until)
    schedule_id = schedules.create_schedule(context.engine(), spec, principal().actor)
    response = jsonify(_schedule_json(schedules.get_schedule(context.engine(), schedule_id), upcoming=5))
    response.status_code = 201
    return response


@blueprint.get("")
@requires(Permission.READ)
def list_schedules() -> Response:
    """Schedules by id, filtered by ``flow``, paged with ``cursor``."""
    limit = versioned.page_limit()
    rows = schedule_rows.list_schedules(context.engine(), flow_id=request.args.get("flow"),
                                    after=request.args.get("cursor", ""), limit=limit)
    return jsonify({"items": [_schedule_json(r) for r in rows],
                    "next_cursor": rows[-1]["id"] if len(rows) == limit else None})


@blueprint.get("/<schedule_id>")
@requires(Permission.READ)
def get_schedule(schedule_id: str) -> Response:
    """A schedule; ``?next=N`` adds its next N fire times."""
    upcoming = query_number("next", int, 0, low=0, high=MAX_NEXT)
    return jsonify(_schedule_json(schedules.get_schedule(context.engine(), schedule_id), upcoming=upcoming))


@blueprint.patch("/<schedule_id>")
@requires(Permission.DEFINE)
@accepts(ScheduleChanges)
def update_schedule(schedule_id: str, body: ScheduleChanges) -> Response:
    """Change, pause (``enabled: false`` or ``paused_until``) or resume a schedule."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise ValidationError([Problem("", "name at least one field to change")])
    schedules.update_schedule(context.engine(), schedule_id, changes, principal().actor)
    return jsonify(_schedule_json(schedules.get_schedule(context.engine(), schedule_id), upcoming=5))


@blueprint.delete("/<schedule_id>")
@requires(Permission.DEFINE)
def delete_schedule(schedule_id: str) -> Response:
    """Delete a schedule made through the API (a declared one is removed from its flow)."""
    schedules.delete_schedule(context.engine(), schedule_id, principal().actor)
    return Response(status=204)


@blueprint.get("/<schedule_id>/fires")
@requires(Permission.READ)
def schedule_fires(schedule_id: str) -> Response:
    """Decided slots, newest first: started (with the run), skipped, missed or queued, and why;
    paged with ``cursor`` (the ``next_cursor`` of the page before), as every list is."""
    schedules.get_schedule(context.engine(), schedule_id)
    limit = versioned.page_limit()
    boundary = _fires_cursor()
    if boundary is not None and boundary.tzinfo is None:
        boundary = boundary.replace(tzinfo=dt.UTC)
    rows = schedule_rows.fires_of(context.engine(), schedule_id, before=boundary, limit=limit)
    items = [{"fire_at": _iso(r["fire_at"]), "status": r["status"], "run_id": r["run_id"], "reason": r["reason"],
              "recorded_at": _iso(r["recorded_at"]), "recorded_by": r["recorded_by"]} for r in rows]
    last = rows[-1]["fire_at"] if len(rows) == limit else None
    return jsonify({"items": items, "next_cursor": str((last - _EPOCH) // _MICRO) if last else None})


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def _fires_cursor() -> dt.datetime | None:
    """The page boundary: ``cursor`` (opaque, from ``next_cursor``), or ``before``, an ISO
    time, which this list read before it paged like the others."""
    if raw := request.args.get("cursor"):
        try:
            if raw.isdigit() and len(raw) <= 20:
                return _EPOCH + int(raw) * _MICRO
        except OverflowError:
            pass
        raise ValidationError([Problem("cursor", "not a cursor this API returned")])
    before = request.args.get("before")
    try:
        return dt.datetime.fromisoformat(before) if before else None
    except ValueError:
        raise ValidationError([Problem("before", f"'{before[:50]}' is not an ISO 8601 time")]) from None


@blueprint.post("/<schedule_id>/backfill")
@requires(Permission.OPERATE)
@responds(202)
@accepts(Backfill)
def backfill(schedule_id: str, body: Backfill) -> Response:
    """Run every slot in [start, end] that has not run (at most 1000)."""
    if body.end < body.start:
        raise ValidationError([Problem("end", "comes before start")])
    engine = context.engine()
    started, done = schedules.backfill(engine, schedule_id, body.start, body.end, principal().actor)
    for run in started:
        context.publisher().deliver(run.owed)
    response = jsonify({"schedule": schedule_id, "started": [r.run_id for r in started], "already_done": done})
    response.status_code = 202
    return response


