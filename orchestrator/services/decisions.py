"""What people and runs decide about running runs and their waiting steps: cancel a run, and
let a parent run go on when its subflow run ends (approvals are decided in approvals.py)."""
from __future__ import annotations

from orchestrator.errors import Conflict
from orchestrator.execution.lifecycle import RunStatus, StepStatus
from orchestrator.services.follow_up import follow_up
from orchestrator.services.publisher import Publisher, Revoke
from orchestrator.store import attempts, runs, views
from orchestrator.store.runs import Cancellation, Ending


def cancel(publisher: Publisher, revoke: Revoke, run_id: str, *, actor: str) -> None:
    """Cancel a run: nothing more of it starts, its running steps are killed, its subflow runs
    are cancelled; then its finally steps run, if it has some and had started. A parent run
    waiting on it sees its flow step fail once it has ended."""
    run = views.get_run(publisher.engine, run_id, with_steps=False)
    has_finally = bool(publisher.plans.plan(run.flow_id, run.flow_version).finally_)
    cancellation = runs.cancel_run(publisher.engine, run_id, actor, has_finally)
    wind_down(publisher, revoke, cancellation, actor)
    ending = cancellation.ending
    if not ending.status.finished:  # its finally steps run, then it ends
        publisher.deliver(ending.owed)
        return
    follow_up(publisher, ending.owed)
    if ending.parent_step_run_id is not None:
        publisher.deliver(attempts.resume_attempt(publisher.engine, ending.parent_step_run_id,
                                                  StepStatus.FAILED, error=f"subflow run {run_id} cancelled",
                                                  actor=actor))


def wind_down(publisher: Publisher, revoke: Revoke, cancellation: Cancellation, actor: str) -> None:
    """What a cancelled or stopped run's other steps leave to do: kill the tasks running
    them, cancel its subflow runs. (Its end, or its finally steps, are the caller's.)"""
    if cancellation.task_ids:
        revoke(cancellation.task_ids)
    for child in cancellation.children:
        try:
            cancel(publisher, revoke, child, actor=actor)
        except Conflict:
            pass  # it ended meanwhile


def settle_parent(publisher: Publisher, ending: Ending, actor: str) -> None:
    """A subflow's run ended: decide the parent's waiting step and let the parent go on."""
    if ending.parent_step_run_id is None:
        return
    if ending.status is RunStatus.SUCCEEDED:
        owed = attempts.resume_attempt(publisher.engine, ending.parent_step_run_id, StepStatus.SUCCEEDED,
                                       ending.result, actor=actor)
    else:
        owed = attempts.resume_attempt(publisher.engine, ending.parent_step_run_id, StepStatus.FAILED,
                                       error=f"subflow run {ending.run_id} {ending.status.value}: {ending.error}",
                                       actor=actor)
    publisher.deliver(owed)
