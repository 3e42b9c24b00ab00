"""Restarting a failed or cancelled run: a new run of its flow (the same version or the
latest) from a step path or from its failed steps, the outcomes it reuses copied into it."""
from __future__ import annotations

import uuid

from orchestrator.definitions.inputs import validate_inputs
from orchestrator.errors import Conflict, Problem, ValidationError
from orchestrator.execution.compiler import compile_run
from orchestrator.execution.context import Context
from orchestrator.execution.lifecycle import RunStatus
from orchestrator.execution.messages import RunRef
from orchestrator.execution.restarts import RestartRequest, choose
from orchestrator.services.publisher import Publisher
from orchestrator.services.scripts import pin_scripts
from orchestrator.store import admission
from orchestrator.store.admission import NewRun
from orchestrator.store.views import RunView

RESTARTABLE = (RunStatus.FAILED, RunStatus.CANCELLED)


def restart(publisher: Publisher, run: RunView, request: RestartRequest, *, actor: str) -> str:
    """Record and send a new run continuing ``run`` (read with its steps) as ``request`` says;
    returns its id. Conflict when ``run`` has not ended failed or cancelled; ValidationError
    (naming the path) when the point is no step of the version it runs on."""
    if run.status not in RESTARTABLE:
        raise Conflict(f"run {run.id} is {run.status.value}; only failed or cancelled runs restart")
    plan = publisher.plans.plan(run.flow_id, None if request.latest else run.flow_version)
    same = plan.version == run.flow_version
    inputs = run.inputs if same else validate_inputs(plan.flow.inputs, run.inputs)
    scripts = run.scripts if same else pin_scripts(publisher.engine, plan.flow)
    choice = choose(plan, run.steps, request, run.stopped_at)
    reused = set(choice.reused)
    by_path = {s.path: s for s in run.steps if s.id in reused}
    new_id = str(uuid.uuid4())
    ctx = Context.new(new_id, plan.flow_id, plan.version, inputs, scripts=scripts)
    for path in plan.main[:choice.first]:
        ctx.set_outcome(plan.node(path).id, by_path[path].status.value, by_path[path].result)
    message = compile_run(plan, RunRef(new_id, plan.flow_id, plan.version, priority=run.priority), ctx, choice.first)
    # Its message is kept with it (it starts mid-flow): the sweeper can send it if we die now.
    created = admission.create_run(publisher.engine, NewRun(
        new_id, plan.flow_id, plan.version, inputs, trigger="restart", actor=actor, labels=run.labels,
        priority=run.priority, restarted_from=run.id, scripts=scripts, message=dict(message),
        reused=choice.reused))  # not held by a limit
    publisher.deliver(created.owed, message)
    return new_id


def restart_request(start: str | None, failed: bool, version: str = "same") -> RestartRequest:
    """What the API, the console and the command line ask for, checked alike: a step path or
    the failed steps (exactly one), on the ``same`` version or the ``latest``."""
    if (start is None) == (not failed):
        raise ValidationError([Problem("from", 'give either "from" (a step path) or "from_failed": true')])
    return RestartRequest(start=start, failed=failed, latest=version == "latest")
