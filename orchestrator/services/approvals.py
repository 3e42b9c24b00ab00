"""Deciding an approval step: who may (its approvers rule, self_approval), what the decision's
form values become (the step's result, typed), and what its timeout decides."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.definitions.approvals import Approval, form_result
from orchestrator.errors import Conflict, FlowError, NotAllowed, Problem, ValidationError
from orchestrator.execution.lifecycle import StepStatus
from orchestrator.services.publisher import Publisher
from orchestrator.store import approvals, attempts
from orchestrator.store.access import Principal
from orchestrator.store.approvals import ApprovalAttempt


@dataclass(frozen=True)
class Decider:
    """Who decides: a token (its id, name and role), a role through a link issued for it, or
    the command line on the server (``operator``), which holds the database's rights anyway."""

    actor: str  # as the audit trail names it
    identity: str  # as a run's starter is named (token:<name>, the operator's user), for self_approval
    token_id: int | None = None
    token_name: str | None = None
    role: str | None = None
    operator: bool = False

    @classmethod
    def of(cls, principal: Principal, via: str = "") -> Decider:
        if principal.operator:
            return cls(principal.actor, principal.actor, operator=True)
        return cls(principal.actor + via, principal.actor, principal.token_id, principal.name, principal.role.value)


def approval_of(publisher: Publisher, attempt: ApprovalAttempt) -> Approval:
    """The declaration of an approval attempt's step, from its run's flow version."""
    plan = publisher.plans.plan(attempt.flow_id, attempt.flow_version)
    return plan.node(attempt.static_path).step.approval


def may_decide(approval: Approval, decider: Decider) -> bool:
    """Whether the approvers rule lets ``decider`` decide (self_approval aside)."""
    if decider.operator or approval.approvers is None:
        return True
    return approval.approvers.allow(token_id=decider.token_id, token_name=decider.token_name, role=decider.role)


def check_decider(publisher: Publisher, attempt: ApprovalAttempt, approval: Approval, decider: Decider,
                  *, approve: bool) -> None:
    """Raise NotAllowed unless ``decider`` may approve (or reject) this attempt."""
    if not may_decide(approval, decider):
        rule = approval.approvers
        named = [f"role {r}" for r in rule.roles] + [f"token {t}" for t in rule.tokens]
        raise NotAllowed(f"step '{attempt.path}' may be decided only by {', '.join(named)}; "
                         f"{decider.actor} is none of them")
    if approve and not approval.self_approval:
        starter = approvals.started_by(publisher.engine, attempt.run_id, at_the_top=True)
        if starter is not None and starter == decider.identity:
            raise NotAllowed(f"{decider.identity} started run {attempt.run_id} and may not approve it "
                             "(self_approval: false); another approver must")


def decision_result(approval: Approval, values: dict[str, Any] | None, decider: Decider,
                    reason: str | None) -> Any:
    """The result of approving: the form's values, typed and checked (ValidationError naming
    each field otherwise); without a form, who approved and why."""
    if approval.form:
        return form_result(approval, values or {})
    if values:
        raise ValidationError([Problem("values", "this approval has no form: send no values")])
    return {"approved": True, "by": decider.actor, "reason": reason}


def decide_approval(publisher: Publisher, run_id: str, step: str, *, approve: bool, decider: Decider,
                    values: dict[str, Any] | None = None, reason: str | None = None) -> Any:
    """Approve or reject the waiting approval ``step`` (id or path) of a run, once; returns the
    step's result when approved. Nothing is recorded when the decider may not, or the values
    do not fit the form."""
    attempt = approvals.waiting_approval(publisher.engine, run_id, step)
    return decide_attempt(publisher, attempt, approve=approve, decider=decider, values=values, reason=reason)


def decide_attempt(publisher: Publisher, attempt: ApprovalAttempt, *, approve: bool, decider: Decider,
                   values: dict[str, Any] | None = None, reason: str | None = None,
                   before: Callable[[], None] | None = None) -> Any:
    """``decide_approval`` for a known attempt; ``before()`` runs once every check passed and
    just before the decision is recorded (a link is spent there)."""
    approval = approval_of(publisher, attempt)
    check_decider(publisher, attempt, approval, decider, approve=approve)
    result = decision_result(approval, values, decider, reason) if approve else None
    if before is not None:
        before()
    if approve:
        owed = attempts.resume_attempt(publisher.engine, attempt.id, StepStatus.SUCCEEDED, result,
                                       actor=decider.actor, reason=reason)
    else:
        error = f"rejected by {decider.actor}" + (f": {reason}" if reason else "")
        owed = attempts.resume_attempt(publisher.engine, attempt.id, StepStatus.FAILED, error=error,
                                       actor=decider.actor)
    if owed is None:
        raise Conflict(f"step '{attempt.path}' of run {attempt.run_id} was decided already")
    publisher.deliver(owed)
    return result


def time_out(publisher: Publisher, attempt: ApprovalAttempt, actor: str = "sweeper") -> None:
    """An approval whose timeout passed: approved with its form's defaults (``on_timeout:
    approve``) or failed saying it timed out."""
    try:
        approval: Approval | None = approval_of(publisher, attempt)
    except (FlowError, KeyError):  # its flow version cannot be read: the safe side
        approval = None
    if approval is not None and approval.on_timeout == "approve":
        owed = attempts.resume_attempt(publisher.engine, attempt.id, StepStatus.SUCCEEDED, approval.defaults(),
                                       actor=actor, reason="timed out: on_timeout approve")
    else:
        after = f" after {approval.timeout:g}s" if approval is not None and approval.timeout else ""
        owed = attempts.resume_attempt(publisher.engine, attempt.id, StepStatus.FAILED,
                                       error=f"approval timed out{after}", actor=actor)
    if owed is not None:
        publisher.deliver(owed)
