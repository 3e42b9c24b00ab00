"""/api/v1/.../runs: start runs (and wait for them), read them, decide their approvals."""
from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from api import context
from api.auth import principal, requires
from api.schemas import MAX_VERSION, Decision, Empty, RestartRun, StartRun, accepts, query_number, responds
from orchestrator.definitions.inputs import validate_inputs
from orchestrator.errors import NotFound, Problem, ValidationError
from orchestrator.execution.lifecycle import RunStatus
from orchestrator.observe.timeline import render_timeline
from orchestrator.services.decisions import cancel, decide_approval
from orchestrator.services.runs import restart, start_saved, wait_for_run
from orchestrator.store import runs, versions, views
from orchestrator.store.access import Permission
from orchestrator.store.views import RunView

blueprint = Blueprint("runs", __name__)
MAX_WAIT_S = 300.0
MAX_PAGE = 200
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def _run_json(run: RunView) -> dict[str, Any]:
    steps = [{
        "path": s.path, "step_id": s.step_id, "kind": s.kind, "item_index": s.item_index,
        "attempt": s.attempt, "status": s.status.value, "deliveries": s.deliveries,
        "worker": s.worker, "result": s.result, "error": s.error, "cached": s.cached,
        "created_at": _iso(s.created_at), "started_at": _iso(s.started_at), "finished_at": _iso(s.finished_at),
    } for s in run.steps]
    return {
        "id": run.id, "flow": run.flow_id, "version": run.flow_version, "status": run.status.value,
        "trigger": run.trigger, "inputs": run.inputs, "result": run.result, "error": run.error,
        "parent_run_id": run.parent_run_id, "restarted_from": run.restarted_from,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at), "steps": steps,
        "links": {"self": url_for("v1.runs.get_run", run_id=run.id)},
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@blueprint.post("/flows/<path:flow_id>/runs")
@requires(Permission.OPERATE)
@responds(202, 200)
@accepts(StartRun)
def start_run(flow_id: str, body: StartRun) -> Response:
    """Start a run; with ``?wait=SECONDS`` answer 200 with the run if it ends in time, else 202."""
    return start_and_answer(flow_id, body.inputs, body.version, trigger="api", actor=principal().actor)


def start_and_answer(flow_id: str, given: dict[str, Any], version: int | None, *, trigger: str,
                     actor: str) -> Response:
    """Start a run of a saved flow with the request's ``?wait`` and ``Idempotency-Key``."""
    engine = context.engine()
    saved = versions.get_flow_version(engine, flow_id, version)  # NotFound for a deleted flow
    plan = context.publisher().plans.plan(flow_id, saved["version"])
    inputs = validate_inputs(plan.flow.inputs, given)
    wait = query_number("wait", float, low=0, high=MAX_WAIT_S)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise ValidationError([Problem("Idempotency-Key", "must be 1 to 200 characters")])
    run_id = start_saved(context.publisher(), plan, inputs, trigger=trigger, actor=actor, idempotency_key=key)
    if wait:
        wait_for_run(engine, run_id, wait)
        run = views.get_run(engine, run_id)
        if run.status.finished:
            return jsonify(_run_json(run))
    return _accepted(run_id, status=runs.run_status(engine, run_id).value)


def _accepted(run_id: str, **fields: Any) -> Response:
    """202 for a run that goes on without the caller, with where to follow it."""
    location = url_for("v1.runs.get_run", run_id=run_id)
    response = jsonify({"id": run_id, **fields, "links": {"self": location}})
    response.status_code = 202
    response.headers["Location"] = location
    return response


@blueprint.get("/runs")
@requires(Permission.READ)
def list_runs() -> Response:
    """Runs, newest first; filter by flow, status, trigger, since/until; paged with ``cursor``."""
    args = request.args
    status = args.get("status")
    if status is not None and status not in {s.value for s in RunStatus}:
        raise ValidationError([Problem("status", f"must be one of {', '.join(s.value for s in RunStatus)}")])
    limit = query_number("limit", int, 50, low=1, high=MAX_PAGE)
    before = _cursor(args.get("cursor"))
    rows = views.list_runs(context.engine(), flow_id=args.get("flow"), status=status,
                             trigger=args.get("trigger"), since=_time(args, "since"), until=_time(args, "until"),
                             before=before, limit=limit)
    items = [{"id": r.id, "flow": r.flow_id, "version": r.flow_version, "status": r.status.value,
              "trigger": r.trigger, "error": r.error, "created_at": _iso(r.created_at),
              "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
              "links": {"self": url_for("v1.runs.get_run", run_id=r.id)}} for r in rows]
    last = rows[-1] if len(rows) == limit else None
    next_cursor = f"{(last.created_at - _EPOCH) // _MICRO}_{last.id}" if last else None
    return jsonify({"items": items, "next_cursor": next_cursor})


def _time(args: Any, name: str) -> dt.datetime | None:
    raw = args.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError([Problem(name, f"'{raw}' is not an ISO 8601 time")]) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _cursor(raw: str | None) -> tuple[dt.datetime, str] | None:
    """The page boundary a previous page returned: its last run's creation time and id."""
    if not raw:
        return None
    micros, _, run_id = raw.partition("_")
    try:
        return _EPOCH + int(micros) * _MICRO, run_id
    except (ValueError, OverflowError):
        raise ValidationError([Problem("cursor", "not a cursor this API returned")]) from None


@blueprint.get("/runs/<run_id>/steps/<path:path>/logs")
@requires(Permission.READ)
def step_logs(run_id: str, path: str) -> Response:
    """The captured output of every attempt of one step (or ``?attempt=N``)."""
    run = views.get_run(context.engine(), run_id)
    attempts = [s for s in run.steps if s.path == path]
    if not attempts:
        raise NotFound(f"run {run_id} has no step '{path}'")
    wanted = query_number("attempt", int, low=0, high=MAX_VERSION)
    if wanted is not None:
        attempts = [s for s in attempts if s.attempt == wanted]
        if not attempts:
            raise NotFound(f"step '{path}' of run {run_id} has no attempt {wanted}")
    return jsonify({"run": run_id, "path": path, "attempts": [
        {"attempt": s.attempt, "status": s.status.value, "logs": s.logs or ""} for s in attempts]})


@blueprint.get("/runs/<run_id>")
@requires(Permission.READ)
def get_run(run_id: str) -> Response:
    """A run: status, inputs, result, error, and every step attempt with its timings."""
    return jsonify(_run_json(views.get_run(context.engine(), run_id)))


@blueprint.get("/runs/<run_id>/timeline.svg")
@requires(Permission.READ)
def run_timeline(run_id: str) -> Response:
    """The run as a Gantt chart (SVG): each step attempt waiting, then executing."""
    return Response(render_timeline(views.get_run(context.engine(), run_id)), mimetype="image/svg+xml")


run_timeline.millrace_produces = "image/svg+xml"  # type: ignore[attr-defined]


@blueprint.post("/runs/<run_id>/cancel")
@requires(Permission.OPERATE)
@accepts(Empty)
def cancel_run(run_id: str, body: Empty) -> Response:
    """Cancel a run: its running steps are killed, nothing after them starts."""
    cancel(context.publisher(), context.revoke(), run_id, actor=principal().actor)
    return jsonify(_run_json(views.get_run(context.engine(), run_id)))


@blueprint.post("/runs/<run_id>/restart")
@requires(Permission.OPERATE)
@responds(202)
@accepts(RestartRun)
def restart_run(run_id: str, body: RestartRun) -> Response:
    """A new run from top-level step ``{"from": "<step id>"}``, reusing the results before it."""
    step = body.from_
    engine = context.engine()
    old = views.get_run(engine, run_id)
    versions.get_flow_version(engine, old.flow_id, old.flow_version)  # NotFound if never saved
    plan = context.publisher().plans.plan(old.flow_id, old.flow_version)
    new_id = restart(context.publisher(), plan, old, step, actor=principal().actor)
    return _accepted(new_id, restarted_from=run_id)


@blueprint.post("/runs/<run_id>/steps/<path:step>/approve")
@requires(Permission.OPERATE)
@accepts(Decision)
def approve(run_id: str, step: str, body: Decision) -> Response:
    """Approve a waiting approval step; the run goes on."""
    return _decide(run_id, step, body, approve=True)


@blueprint.post("/runs/<run_id>/steps/<path:step>/reject")
@requires(Permission.OPERATE)
@accepts(Decision)
def reject(run_id: str, step: str, body: Decision) -> Response:
    """Reject a waiting approval step; the step fails."""
    return _decide(run_id, step, body, approve=False)


def _decide(run_id: str, step: str, body: Decision, *, approve: bool) -> Response:
    decide_approval(context.publisher(), run_id, step, approve=approve,
                    actor=principal().actor, reason=body.reason)
    return jsonify({"run": run_id, "step": step, "decision": "approved" if approve else "rejected"})
