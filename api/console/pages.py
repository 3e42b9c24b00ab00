"""The console's pages and actions: runs, a run, flows, a flow with its run form; sign in."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import Response, g, jsonify, redirect, render_template, request, url_for

from api import context
from api.console import COOKIE, blueprint, local_target, needs
from api.console.shapes import diffs, graph, highlight
from api.runs import run_answer
from orchestrator.definitions.approvals import values_from_text
from orchestrator.definitions.inputs import parse_text_inputs, validate_inputs
from orchestrator.definitions.labels import parse_label_filter
from orchestrator.definitions.parser import flow_from_stored
from orchestrator.errors import Problem, ValidationError
from orchestrator.execution.lifecycle import RunStatus
from orchestrator.services.approvals import Decider, approval_of, decide_attempt
from orchestrator.services.decisions import cancel
from orchestrator.services.restarts import restart, restart_request
from orchestrator.services.runs import start_saved
from orchestrator.store import approvals, versions, views
from orchestrator.store.access import SESSION_TTL, Permission, open_session, webhook_enabled

PAGE = 50
FLOWS_PAGE = 100  # each flow's last run is one indexed query


@blueprint.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """Sign in with an API token; the session it opens is all the cookie holds."""
    error = None
    if request.method == "POST":
        opened = open_session(context.engine(), request.form.get("token", "").strip())
        if opened is not None:
            session_id, _ = opened
            response = redirect(local_target(request.args.get("next"), url_for("console.runs")))
            response.set_cookie(COOKIE, session_id, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
                                samesite="Strict", secure=request.is_secure, path="/")
            return response
        error = "unknown or revoked token"
    return render_template("sign_in.html", error=error), 401 if error else 200


# --- runs ----------------------------------------------------------------------------------

def _filters() -> dict[str, Any]:
    args = request.args
    status = args.get("status") or None
    if status is not None and status not in {s.value for s in RunStatus}:
        status = None
    return {"flow": args.get("flow") or None, "status": status, "trigger": args.get("trigger") or None,
            "run": (args.get("run") or "").strip() or None, "since": _time(args.get("since")),
            "until": _time(args.get("until")), "labels": " ".join(args.getlist("labels")).strip() or None}


def _labels(text: str | None) -> dict[str, str]:
    """``team:billing env:prod`` (the labels field, or a label's link) as labels to filter by;
    a word that is not key:value is left out."""
    wanted = {}
    for word in (text or "").split():
        try:
            key, value = parse_label_filter(word)
        except ValidationError:
            continue
        wanted[key] = value
    return wanted


def _time(raw: str | None) -> str | None:
    """A time from a filter field (`datetime-local` gives no zone: it is read as UTC)."""
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).isoformat()
    except (ValueError, OverflowError):
        return None


def _page_of_runs(filters: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    if filters["run"]:  # search by id: that run alone
        try:
            found = [views.get_run(context.engine(), filters["run"], with_steps=False)]
        except Exception:  # noqa: BLE001 - not a run id: no run
            found = []
        rows, more = found, None
    else:
        before = _cursor(request.args.get("cursor"))
        rows = views.list_runs(context.engine(), flow_id=filters["flow"], status=filters["status"],
                               trigger=filters["trigger"], before=before, limit=PAGE, labels=_labels(filters["labels"]),
                               since=dt.datetime.fromisoformat(filters["since"]) if filters["since"] else None,
                               until=dt.datetime.fromisoformat(filters["until"]) if filters["until"] else None)
        last = rows[-1] if len(rows) == PAGE else None
        more = views.page_cursor(last) if last else None
    starters = _started_by_each(context.engine(), [r.id for r in rows])
    items = [{"id": r.id, "flow": r.flow_id, "version": r.flow_version, "status": r.status.value,
              "trigger": r.trigger, "error": r.error, "created_at": _iso(r.created_at),
              "took": _took(r.started_at, r.finished_at), "by": starters.get(r.id), "labels": r.labels} for r in rows]
    return items, more


def _started_by_each(engine: Any, run_ids: list[str]) -> dict[str, str]:
    """Who started each run (its run.created event's actor), in one query for the page."""
    from orchestrator.store import audit

    return audit.actors_of(engine, "run.created", [f"run:{i}" for i in run_ids])


def _cursor(raw: str | None) -> tuple[dt.datetime, str] | None:
    try:
        return views.page_boundary(raw) if raw else None
    except ValueError:
        return None  # a cursor that is not one: the first page


@blueprint.get("/")
def runs() -> str:
    filters = _filters()
    items, more = _page_of_runs(filters)
    flows = [row["flow_id"] for row in versions.list_heads(context.engine(), versions.FLOWS, limit=500)]
    given = {k: v for k, v in filters.items() if v}
    older = url_for("console.runs", cursor=more, **given) if more else None
    live = None if request.args.get("cursor") else url_for("console.live_runs", **given)  # an older page stays
    return render_template("runs.html", items=items, older=older, filters=filters, flows=flows, live=live,
                           statuses=[s.value for s in RunStatus])


@blueprint.get("/console/live/runs")
def live_runs() -> Response:
    """The first page of runs under the same filters, for the runs page to redraw (one indexed query)."""
    items, _ = _page_of_runs(_filters())
    return jsonify({"items": items})


@blueprint.get("/runs/<run_id>")
def run(run_id: str) -> str:
    engine = context.engine()
    view = views.get_run(engine, run_id, with_output=False)  # the steps' results and logs are not shown here
    answer = run_answer(view).model_dump(mode="json")
    answer["result"] = view.result if view.status.finished else None
    _, document = versions.load_flow_document(engine, view.flow_id, view.flow_version)
    flow = flow_from_stored(document)
    waiting = [(a, approval_of(context.publisher(), a)) for a in approvals.waiting_approvals(engine, run_id)]
    return render_template("run.html", run=answer, steps=_steps(answer["steps"]), waiting=waiting,
                           nodes=graph(engine, view),
                           restart_paths=_restart_paths(flow, view), started_by=approvals.started_by(engine, run_id),
                           inputs=json.dumps(view.inputs, indent=2), result=json.dumps(view.result, indent=2),
                           finished=view.status.finished)


def _restart_paths(flow: Any, view: Any) -> list[str]:
    """What a run restarts from: its top-level steps, then every step path it recorded."""
    paths = dict.fromkeys(s.id for s in flow.steps)
    paths.update(dict.fromkeys(s.path for s in view.steps if not s.path.startswith(("on_failure.", "finally."))))
    return list(paths)


@blueprint.get("/console/live/runs/<run_id>")
def live_run(run_id: str) -> Response:
    """A run's status and steps, for the run page to redraw while it is not finished."""
    view = views.get_run(context.engine(), run_id, with_output=False)
    answer = run_answer(view).model_dump(mode="json")
    return jsonify({"status": answer["status"], "error": answer["error"], "steps": _steps(answer["steps"]),
                    "graph": render_template("_graph.html", nodes=graph(context.engine(), view)),
                    "result": json.dumps(answer["result"], indent=2),
                    "finished": answer["status"] in ("succeeded", "failed", "cancelled")})


@blueprint.get("/runs/<run_id>/timeline.svg")
def timeline(run_id: str) -> Response:
    from orchestrator.observe.timeline import render_timeline

    return Response(render_timeline(views.get_run(context.engine(), run_id)), mimetype="image/svg+xml")


@blueprint.get("/runs/<run_id>/steps/<path:step>/logs")
def step_logs(run_id: str, step: str) -> str:
    view = views.get_run(context.engine(), run_id, path=step)
    attempts = list(view.steps)
    return render_template("logs.html", run_id=run_id, step=step, attempts=attempts,
                           finished=_step_over(view, attempts))


def _step_over(view: Any, attempts: list[Any]) -> bool:
    """Nothing more will be written for this step: its run ended, or its last attempt did well."""
    return view.status.finished or bool(attempts and attempts[-1].status.value in ("succeeded", "skipped"))


@blueprint.get("/console/live/runs/<run_id>/steps/<path:step>/logs")
def live_logs(run_id: str, step: str) -> Response:
    """The latest attempt's output so far (recorded with the masking every record gets)."""
    view = views.get_run(context.engine(), run_id, path=step)
    attempts = list(view.steps)
    last = attempts[-1] if attempts else None
    return jsonify({"attempt": last.attempt if last else None, "logs": last.logs if last else "",
                    "finished": _step_over(view, attempts)})


def _steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step's attempts folded into one line (its last attempt), nested by its path's depth."""
    latest: dict[str, dict[str, Any]] = {}
    for step in steps:
        latest[step["path"]] = {**{k: v for k, v in step.items() if k != "result"},
                                "attempts": latest.get(step["path"], {}).get("attempts", 0) + 1,
                                "depth": step["path"].count(".") + step["path"].count("["),
                                "took": _took(step["started_at"], step["finished_at"])}
    return list(latest.values())


@blueprint.post("/runs/<run_id>/cancel")
@needs(Permission.OPERATE)
def cancel_run(run_id: str) -> Response:
    cancel(context.publisher(), context.revoke(), run_id, actor=g.millrace_principal.actor)
    return redirect(url_for("console.run", run_id=run_id))


@blueprint.post("/runs/<run_id>/steps/<path:step>/decide")
@needs(Permission.OPERATE)
def decide(run_id: str, step: str) -> Response:
    reason = request.form.get("reason") or None
    if reason is not None and len(reason) > 2000:
        raise ValidationError([Problem("reason", "at most 2000 characters")])
    approve = request.form.get("decision") == "approve"
    attempt = approvals.waiting_approval(context.engine(), run_id, step)
    approval = approval_of(context.publisher(), attempt)
    values = values_from_text(approval, request.form) if approve and approval.form else None
    decide_attempt(context.publisher(), attempt, approve=approve, decider=Decider.of(g.millrace_principal),
                   values=values, reason=reason)
    return redirect(url_for("console.run", run_id=run_id))


@blueprint.post("/runs/<run_id>/restart")
@needs(Permission.OPERATE)
def restart_run(run_id: str) -> Response:
    engine = context.engine()
    old = views.get_run(engine, run_id)
    failed = bool(request.form.get("failed"))
    asked = restart_request(None if failed else request.form.get("from", ""), failed,
                            "latest" if request.form.get("latest") else "same")
    new_id = restart(context.publisher(), old, asked, actor=g.millrace_principal.actor)
    return redirect(url_for("console.run", run_id=new_id))


# --- flows ---------------------------------------------------------------------------------

@blueprint.get("/flows")
def flows() -> str:
    engine = context.engine()
    heads = versions.list_heads(engine, versions.FLOWS, prefix=request.args.get("prefix", ""),
                                after=request.args.get("after", ""), limit=FLOWS_PAGE)
    from orchestrator.store import schedules as schedule_rows

    last = {}
    for row in heads:
        recent = views.list_runs(engine, flow_id=row["flow_id"], limit=1)
        last[row["flow_id"]] = recent[0] if recent else None
    upcoming = schedule_rows.next_fires(engine, [row["flow_id"] for row in heads])
    more = url_for("console.flows", after=heads[-1]["flow_id"], prefix=request.args.get("prefix") or None) \
        if len(heads) == FLOWS_PAGE else None
    return render_template("flows.html", heads=heads, last=last, upcoming=upcoming, more=more)


@blueprint.route("/flows/<path:flow_id>", methods=["GET", "POST"])
def flow(flow_id: str) -> Any:
    engine = context.engine()
    saved = versions.get_flow_version(engine, flow_id, None)
    definition = flow_from_stored(saved["document"])
    errors: dict[str, str] = {}
    given = dict(request.form) if request.method == "POST" else {}
    if request.method == "POST":
        if not g.millrace_principal.may(Permission.OPERATE):
            return render_template("error.html", status=403, title="Forbidden", retry=False,
                                   detail=f"role '{g.millrace_principal.role.value}' may not operate"), 403
        try:
            inputs = _form_inputs(definition.inputs, request.form)
            plan = context.publisher().plans.plan(flow_id, saved["version"])
            run_id = start_saved(context.publisher(), plan, validate_inputs(plan.flow.inputs, inputs),
                                 trigger="console", actor=g.millrace_principal.actor)
            return redirect(url_for("console.run", run_id=run_id))
        except ValidationError as exc:
            errors = {p.path.removeprefix("inputs.").split(".")[0] or "": p.message for p in exc.problems}
    recent = views.list_runs(engine, flow_id=flow_id, limit=10)
    history = diffs(versions.versions_of(engine, versions.FLOWS, flow_id, "source",
                                          after=max(saved["version"] - 11, 0), limit=11))
    from orchestrator.store import schedules as schedule_rows

    return render_template("flow.html", saved=saved, flow=definition, errors=errors, given=given, recent=recent,
                           source=highlight(saved["source"]), history=history,
                           webhook=url_for("v1.hooks.call_hook", flow_id=flow_id, _external=True)
                           if webhook_enabled(engine, flow_id) else None,
                           schedules=schedule_rows.list_schedules(engine, flow_id=flow_id, limit=50)
                           ), 422 if errors else 200


def _form_inputs(specs: dict[str, Any], form: Any) -> dict[str, Any]:
    """A run form's fields as the flow's inputs: each typed as its input says; empty is absent."""
    pairs = []
    for name, spec in specs.items():
        if spec.type == "boolean":
            pairs.append(f"{name}={'true' if form.get(name) else 'false'}")
        elif form.get(name, "") != "":
            pairs.append(f"{name}={form[name]}")
    try:
        return parse_text_inputs(specs, pairs)
    except RecursionError:
        raise ValidationError([Problem("inputs", "a value nests too deeply")]) from None


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _took(start: Any, end: Any) -> str:
    if not start or not end:
        return ""
    start = dt.datetime.fromisoformat(start) if isinstance(start, str) else start
    end = dt.datetime.fromisoformat(end) if isinstance(end, str) else end
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


# --- schedules, scripts, variables, audit, workers -----------------------------------------

@blueprint.get("/schedules")
def schedules() -> str:
    from orchestrator.definitions.cron import Cron
    from orchestrator.store import schedules as schedule_rows

    engine = context.engine()
    found = []
    for row in schedule_rows.list_schedules(engine, flow_id=request.args.get("flow") or None, limit=200):
        start = max(row["next_fire_at"] - dt.timedelta(microseconds=1), dt.datetime.now(dt.UTC))
        upcoming = [t.isoformat() for t in Cron(row["cron"], row["timezone"]).upcoming(start, 3)]
        found.append({**row, "upcoming": upcoming, "fires": schedule_rows.fires_of(engine, row["id"], limit=5)})
    return render_template("schedules.html", schedules=found, event_triggers=_event_triggers(engine))


def _event_triggers(engine: Any) -> list[dict[str, Any]]:
    """The event triggers with their connection state and their last messages."""
    from orchestrator.store import event_triggers

    now = dt.datetime.now(dt.UTC)
    rows = event_triggers.listing(engine, flow_id=request.args.get("flow") or None, limit=200)
    return [{"row": row, "state": row.state_now(now), "fires": event_triggers.fires_of(engine, row.id, limit=5)}
            for row in rows]


@blueprint.post("/schedules/<schedule_id>/pause")
@needs(Permission.DEFINE)
def pause_schedule(schedule_id: str) -> Response:
    from orchestrator.services import scheduling

    enabled = request.form.get("enabled") == "true"
    scheduling.update_schedule(context.engine(), schedule_id, {"enabled": enabled}, g.millrace_principal.actor)
    return redirect(local_target(request.form.get("back"), url_for("console.schedules")))


@blueprint.get("/scripts")
def scripts() -> str:
    heads = versions.list_heads(context.engine(), versions.SCRIPTS, prefix=request.args.get("prefix", ""), limit=500)
    return render_template("scripts.html", heads=heads)


@blueprint.get("/scripts/<path:path>")
def script(path: str) -> str:
    saved = versions.get_version(context.engine(), versions.SCRIPTS, path, None)
    return render_template("script.html", saved=saved, schema=json.dumps(saved["input_schema"], indent=2))


@blueprint.get("/variables")
def variables() -> str:
    from orchestrator.store import variables as variable_rows

    rows = variable_rows.list_variables(context.engine(), limit=1000)
    shown = [{"name": r["name"], "secret": r["secret"],
              "value": None if r["secret"] else json.dumps(r["value"]), "updated_at": _iso(r["updated_at"])}
             for r in rows]  # a secret: that it is set, never its value
    return render_template("variables.html", rows=shown)


@blueprint.get("/audit")
def audit() -> str:
    from orchestrator.store import audit as audit_rows
    from orchestrator.store.verification import last_verdict

    action, target = request.args.get("action") or None, request.args.get("target") or None
    after = request.args.get("after", "0")
    after_id = int(after) if after.isascii() and after.isdigit() and len(after) < 19 else 0
    rows = audit_rows.list_audit(context.engine(), action=action, target=target, after_id=after_id, limit=PAGE)
    older = url_for("console.audit", after=rows[-1]["id"], **{k: v for k, v in (("action", action), (
        "target", target)) if v}) if len(rows) == PAGE else None
    return render_template("audit.html", rows=rows, older=older, action=action, target=target,
                           verdict=last_verdict(context.engine()))


_WORKERS: dict[str, Any] = {"at": 0.0, "found": []}


@blueprint.get("/workers")
def workers() -> str:
    """Who is up: Celery's inspect (a broadcast of a second at most), kept 10 s for every viewer."""
    import time

    if time.monotonic() - _WORKERS["at"] > 10:
        _WORKERS.update(found=context.workers(), at=time.monotonic())
    return render_template("workers.html", workers=_WORKERS["found"])
