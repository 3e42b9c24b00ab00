"""/api/v1/.../runs: start runs (and wait for them), read them, decide their approvals."""
from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, ClassVar

from flask import Blueprint, Response, url_for
from pydantic import Field

from api import context
from api.auth import principal, requires
from api.responses import AttemptLogs, DecisionMade, Links, Run, RunAccepted, RunPage, RunSummary, StepAttempt, StepLogs
from api.schemas import (
    MAX_VERSION,
    Decision,
    Empty,
    Headers,
    Paged,
    Query,
    RestartRun,
    StartRun,
    Time,
    accepts,
    answer,
    fails,
    headers,
    query,
    returns,
)
from orchestrator.definitions.inputs import validate_inputs
from orchestrator.definitions.labels import parse_label_filter
from orchestrator.definitions.steps import INPUT_NAME
from orchestrator.errors import NotFound, Problem, ValidationError
from orchestrator.execution.lifecycle import RunStatus
from orchestrator.observe.timeline import render_timeline
from orchestrator.services.approvals import Decider, decide_approval
from orchestrator.services.decisions import cancel
from orchestrator.services.restarts import restart, restart_request
from orchestrator.services.runs import start_saved, wait_for_run
from orchestrator.store import runs, versions, views
from orchestrator.store.access import Permission
from orchestrator.store.views import RunListing, RunView

blueprint = Blueprint("runs", __name__)
MAX_WAIT_S = 300.0


class Wait(Query):
    wait: float = Field(default=0, ge=0, le=MAX_WAIT_S, allow_inf_nan=False,
                        description="seconds to wait for the run to end: 200 with the run if it does, else 202")


class Idempotent(Headers):
    idempotency_key: str | None = Field(
        default=None, alias="Idempotency-Key", min_length=1, max_length=200,
        description="a retry with the same key (for the same flow) answers the run it started, never a second one")


class RunFilter(Paged):
    repeatable: ClassVar[tuple[str, ...]] = ("label",)
    prefixed: ClassVar[dict[str, str]] = {"inputs.": "inputs"}

    flow: str | None = Field(default=None, max_length=200, description="only this flow's runs")
    status: RunStatus | None = None
    trigger: str | None = Field(default=None, max_length=64, description="api, webhook, schedule, event, ...")
    since: Time | None = Field(default=None, description="created at or after (ISO 8601; UTC if no offset)")
    until: Time | None = Field(default=None, description="created before (ISO 8601; UTC if no offset)")
    label: list[Annotated[str, Field(max_length=300)]] = Field(
        default_factory=list, max_length=20,
        description="`key:value`, repeatable: only runs with every one of these labels")
    inputs: dict[Annotated[str, Field(pattern=INPUT_NAME)], Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=dict, max_length=10, description=(
            "given as `inputs.NAME=VALUE` parameters (repeat for several inputs, all must hold): only runs whose "
            "input NAME is VALUE read as JSON (42, true, null, \"text\", [1]) or, unless VALUE is a JSON string, "
            "VALUE as a string: `inputs.customer=42` finds 42 and \"42\""))


class AttemptChoice(Query):
    attempt: int | None = Field(default=None, ge=0, le=MAX_VERSION, description="only this attempt (1 is the first)")


def _links(run_id: str) -> Links:
    return Links(self=url_for("v1.runs.get_run", run_id=run_id))


def _summary_fields(run: RunListing) -> dict[str, Any]:
    return {"id": run.id, "flow": run.flow_id, "version": run.flow_version, "status": run.status,
            "trigger": run.trigger, "error": run.error, "created_at": run.created_at,
            "started_at": run.started_at, "finished_at": run.finished_at, "labels": run.labels,
            "links": _links(run.id)}


def run_answer(run: RunView) -> Run:
    steps = [StepAttempt(path=s.path, step_id=s.step_id, kind=s.kind, item_index=s.item_index, attempt=s.attempt,
                         status=s.status, deliveries=s.deliveries, worker=s.worker, result=s.result, error=s.error,
                         error_type=s.error_type, broke_at=s.broke_at, cached=s.cached, reused_from=s.reused_from,
                         created_at=s.created_at, started_at=s.started_at,
                         finished_at=s.finished_at) for s in run.steps]
    return Run(**_summary_fields(run), inputs=run.inputs, result=run.result, parent_run_id=run.parent_run_id,
               restarted_from=run.restarted_from, stopped_at=run.stopped_at, ending=run.ending,
               priority=run.priority, debounce_until=run.debounce_until, steps=steps)


@blueprint.post("/flows/<path:flow_id>/runs")
@requires(Permission.OPERATE)
@returns(202, RunAccepted, headers={"Location": "the run's URL"})
@returns(200, Run)
@fails(409)
@accepts(StartRun)
@query(Wait)
@headers(Idempotent)
def start_run(flow_id: str, body: StartRun, query: Wait, headers: Idempotent) -> Response:
    """Start a run; with `?wait=SECONDS` answer 200 with the run if it ends in time, else 202."""
    trigger = "cli" if principal().operator else "api"  # the command line on the server says so
    return start_and_answer(flow_id, body.inputs, body.version, trigger=trigger, actor=principal().actor,
                            wait=query.wait, key=headers.idempotency_key, labels=body.labels,
                            priority=body.priority)


def start_and_answer(flow_id: str, given: dict[str, Any], version: int | None, *, trigger: str,
                     actor: str, wait: float, key: str | None, labels: dict[str, str] | None = None,
                     priority: int | None = None) -> Response:
    """Start a run of a saved flow (``labels`` over the flow's); wait up to ``wait`` seconds for it to end."""
    engine = context.engine()
    saved = versions.get_flow_version(engine, flow_id, version)  # NotFound for a deleted flow
    plan = context.publisher().plans.plan(flow_id, saved["version"])
    inputs = validate_inputs(plan.flow.inputs, given)
    run_id = start_saved(context.publisher(), plan, inputs, trigger=trigger, actor=actor, idempotency_key=key,
                         labels=labels, priority=priority)
    if wait:
        wait_for_run(engine, run_id, wait)
        run = views.get_run(engine, run_id)
        if run.status.finished:
            return answer(run_answer(run))
    return _accepted(run_id, runs.run_status(engine, run_id))


def _accepted(run_id: str, status: RunStatus, restarted_from: str | None = None) -> Response:
    """202 for a run that goes on without the caller, with where to follow it."""
    links = _links(run_id)
    return answer(RunAccepted(id=run_id, status=status, restarted_from=restarted_from, links=links), 202,
                  Location=links.self)


@blueprint.get("/runs")
@requires(Permission.READ)
@returns(200, RunPage)
@query(RunFilter)
def list_runs(query: RunFilter) -> Response:
    """Runs, newest first; filter by flow, status, trigger, since/until, `label=key:value`
    (repeatable) and `inputs.NAME=VALUE`; each filter has an index."""
    search = views.RunSearch(flow_id=query.flow, status=query.status and query.status.value, trigger=query.trigger,
                             since=query.since, until=query.until, labels=label_filters(query.label),
                             inputs={name: input_values(raw) for name, raw in query.inputs.items()})
    rows = views.list_runs(context.engine(), search, before=_cursor(query.cursor), limit=query.limit)
    last = rows[-1] if len(rows) == query.limit else None
    next_cursor = views.page_cursor(last) if last else None
    return answer(RunPage(items=[RunSummary(**_summary_fields(r)) for r in rows], next_cursor=next_cursor))


def label_filters(given: list[str]) -> dict[str, str]:
    """``["team:billing", ...]`` as the labels a run must all have (a key given twice: refused)."""
    wanted: dict[str, str] = {}
    for i, text in enumerate(given):
        key, value = parse_label_filter(text, f"label[{i}]")
        if key in wanted and wanted[key] != value:
            raise ValidationError([Problem(f"label[{i}]", f"label '{key}' is asked for twice, with two values")])
        wanted[key] = value
    return wanted


def input_values(raw: str) -> tuple[Any, ...]:
    """The values ``inputs.NAME=raw`` matches: raw read as JSON and, unless that is a string, raw itself."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        return (raw,)
    return (parsed,) if isinstance(parsed, str) else (parsed, raw)


def _cursor(raw: str | None) -> tuple[dt.datetime, str] | None:
    """The page boundary a previous page returned: its last run's creation time and id."""
    if not raw:
        return None
    try:
        return views.page_boundary(raw)
    except ValueError:
        raise ValidationError([Problem("cursor", "not a cursor this API returned")]) from None


@blueprint.get("/runs/<run_id>/steps/<path:step>/logs")
@requires(Permission.READ)
@returns(200, StepLogs)
@fails(410)
@query(AttemptChoice)
def step_logs(run_id: str, step: str, query: AttemptChoice) -> Response:
    """The captured output of every attempt of one step (or `?attempt=N`)."""
    run = views.get_run(context.engine(), run_id)
    attempts = [s for s in run.steps if s.path == step]
    if not attempts:
        raise NotFound(f"run {run_id} has no step '{step}'")
    if query.attempt is not None:
        attempts = [s for s in attempts if s.attempt == query.attempt]
        if not attempts:
            raise NotFound(f"step '{step}' of run {run_id} has no attempt {query.attempt}")
    return answer(StepLogs(run=run_id, step=step, attempts=[
        AttemptLogs(attempt=s.attempt, status=s.status, logs=s.logs or "") for s in attempts]))


@blueprint.get("/runs/<run_id>")
@requires(Permission.READ)
@returns(200, Run)
@fails(410)
def get_run(run_id: str) -> Response:
    """A run: status, inputs, result, error, and every step attempt with its timings."""
    return answer(run_answer(views.get_run(context.engine(), run_id)))


@blueprint.get("/runs/<run_id>/timeline.svg")
@requires(Permission.READ)
@returns(200, media="image/svg+xml")
@fails(410)
def run_timeline(run_id: str) -> Response:
    """The run as a Gantt chart (SVG): each step attempt waiting, then executing."""
    return Response(render_timeline(views.get_run(context.engine(), run_id)), mimetype="image/svg+xml")


@blueprint.post("/runs/<run_id>/cancel")
@requires(Permission.OPERATE)
@returns(200, Run)
@fails(409, 410)
@accepts(Empty)
def cancel_run(run_id: str, body: Empty) -> Response:
    """Cancel a run: its running steps are killed, nothing after them starts; then its finally
    steps run (the run is `running` with `ending: cancelled` until they end)."""
    cancel(context.publisher(), context.revoke(), run_id, actor=principal().actor)
    return answer(run_answer(views.get_run(context.engine(), run_id)))


@blueprint.post("/runs/<run_id>/restart")
@requires(Permission.OPERATE)
@returns(202, RunAccepted, headers={"Location": "the new run's URL"})
@fails(409, 410)
@accepts(RestartRun)
def restart_run(run_id: str, body: RestartRun) -> Response:
    """A new run from step `{"from": "each[3].work"}` (any step path) or `{"from_failed": true}`,
    on the same flow version or `"version": "latest"`, reusing the results of what it does not re-run."""
    engine = context.engine()
    old = views.get_run(engine, run_id)
    new_id = restart(context.publisher(), old, restart_request(body.from_, body.from_failed, body.version),
                     actor=principal().actor)
    return _accepted(new_id, runs.run_status(engine, new_id), restarted_from=run_id)


@blueprint.post("/runs/<run_id>/steps/<path:step>/approve")
@requires(Permission.OPERATE)
@returns(200, DecisionMade)
@fails(403, 409, 422)
@accepts(Decision)
def approve(run_id: str, step: str, body: Decision) -> Response:
    """Approve a waiting approval step with its form's `values` (they become its result); the run goes on."""
    return _decide(run_id, step, body, approve=True)


@blueprint.post("/runs/<run_id>/steps/<path:step>/reject")
@requires(Permission.OPERATE)
@returns(200, DecisionMade)
@fails(403, 409)
@accepts(Decision)
def reject(run_id: str, step: str, body: Decision) -> Response:
    """Reject a waiting approval step; the step fails."""
    return _decide(run_id, step, body, approve=False)


def _decide(run_id: str, step: str, body: Decision, *, approve: bool) -> Response:
    result = decide_approval(context.publisher(), run_id, step, approve=approve, decider=Decider.of(principal()),
                             values=body.values, reason=body.reason)
    return answer(DecisionMade(run=run_id, step=step, decision="approved" if approve else "rejected",
                               result=result))
