"""Starting runs: save, check the inputs, record, then send (through the publisher)."""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from orchestrator.definitions.expressions import compile_value
from orchestrator.definitions.flow import Flow
from orchestrator.definitions.inputs import validate_inputs
from orchestrator.definitions.labels import merged
from orchestrator.execution.lifecycle import RunStatus
from orchestrator.execution.plan import Plan, PlanCache, build_plan
from orchestrator.executors.base import Limits
from orchestrator.executors.environments import Index
from orchestrator.services.publisher import Publisher
from orchestrator.services.saving import save_flow
from orchestrator.services.scripts import pin_scripts
from orchestrator.store import admission, runs, versions
from orchestrator.store.admission import Limit, NewRun


def stored_plans(engine: Engine) -> PlanCache:
    """Plans of the flow versions saved in ``engine``'s database, each built once."""
    return PlanCache(lambda flow_id, version: versions.load_flow_document(engine, flow_id, version))


def submit(publisher: Publisher, flow: Flow, source: str, given: dict[str, Any], *,
           trigger: str, actor: str = "cli", index: Index | None = None, ceiling: Limits | None = None,
           labels: dict[str, str] | None = None, priority: int | None = None, home: Path | None = None) -> str:
    """Save the flow, check the inputs, record the run, then publish it; returns the run id."""
    inputs = validate_inputs(flow.inputs, given)
    version = save_flow(publisher.engine, flow, source, actor=actor, index=index, ceiling=ceiling, home=home)
    return start_saved(publisher, build_plan(flow, version), inputs, trigger=trigger, actor=actor,
                       labels=labels, priority=priority)


def start_saved(publisher: Publisher, plan: Plan, inputs: dict[str, Any], *, trigger: str,
                actor: str, idempotency_key: str | None = None, labels: dict[str, str] | None = None,
                priority: int | None = None) -> str:
    """Record and publish a run of a saved flow version whose inputs are already checked.

    With an ``idempotency_key`` used before for this flow, nothing starts: the earlier
    run's id is returned. Each ``script:`` step is pinned now to the version it will run.
    Over the flow's concurrency limit the run is held, cancelled, or refused (Conflict);
    within its debounce window the pending run takes these inputs and its id is returned.
    ``labels`` go over the flow's; ``priority`` (0-9) over the flow's.
    """
    pins = pin_scripts(publisher.engine, plan.flow)
    new = new_run(plan, str(uuid.uuid4()), inputs, trigger=trigger, actor=actor, idempotency_key=idempotency_key,
                  scripts=pins, labels=labels, priority=priority)
    created = admission.create_run(publisher.engine, new)
    publisher.deliver_run(created.owed, plan, inputs, scripts=pins, priority=new.priority)
    return created.run_id


def new_run(plan: Plan, run_id: str, inputs: dict[str, Any], *, labels: dict[str, str] | None = None,
            priority: int | None = None, **more: Any) -> NewRun:
    """A run of ``plan`` to record: the flow's labels under the start's, its priority unless
    the start gives one, the concurrency rule it falls under. Every way a run starts uses it."""
    flow = plan.flow
    return NewRun(run_id, plan.flow_id, plan.version, inputs, labels=merged(flow.labels, labels),
                  priority=flow.priority if priority is None else priority, limit=limit_of(plan, inputs), **more)


def limit_of(plan: Plan, inputs: dict[str, Any]) -> Limit | None:
    """The concurrency rule (limit, debounce) a run with these inputs falls under, if its flow has one."""
    rule = plan.flow.concurrency
    if rule is None:
        return None
    key = "" if rule.key is None else compile_value(rule.key).render({"inputs": inputs})
    return Limit(rule.limit, str(key)[:200], rule.on_limit, rule.debounce or None)


def wait_for_run(engine: Engine, run_id: str, timeout: float | None = None) -> RunStatus:
    """Wait until the run has ended (or ``timeout`` seconds); returns its status."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.01
    while True:
        status = runs.run_status(engine, run_id)
        if status.finished:
            return status
        if deadline is not None and time.monotonic() > deadline:
            return status
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)
