"""/api/v1/runs/<id>/approvals: a run's waiting approvals, their forms, and the signed links
a notification can carry."""
from __future__ import annotations

from flask import Blueprint, Response, request
from pydantic import Field

from api import context
from api.auth import principal, requires
from api.responses import ApprovalLinks, ApprovalList, FormFieldAnswer, WaitingApproval
from api.schemas import Query, answer, query, returns
from orchestrator.errors import NotAllowed
from orchestrator.services import links
from orchestrator.services.approvals import approval_of
from orchestrator.store import approvals
from orchestrator.store.access import Permission, Principal

blueprint = Blueprint("approvals", __name__)


class ApproverChoice(Query):
    approver: str | None = Field(default=None, max_length=220, description=(
        "whom the links are for: `role:<name>` or `token:<name or id>`, one the step's approvers rule allows; "
        "your own token or role, or any for an admin (default: your token)"))


@blueprint.get("/runs/<run_id>/approvals")
@requires(Permission.OPERATE)
@returns(200, ApprovalList)
@query(ApproverChoice)
def list_approvals(run_id: str, query: ApproverChoice) -> Response:
    """The run's approval steps that wait: each one's form, approvers and resume/cancel links."""
    publisher = context.publisher()
    settings = context.settings()
    me = principal()
    wanted = query.approver or (f"token:{me.token_id}" if not me.operator else None)
    if query.approver:
        _check_may_issue(me, query.approver)
    base = settings.public_url or request.url_root.rstrip("/")
    items = []
    for attempt in approvals.waiting_approvals(context.engine(), run_id):
        approval = approval_of(publisher, attempt)
        issued, refused = None, "the command line on the server gets links with ?approver=" if not wanted else None
        if wanted:
            try:
                made = links.issue(publisher, settings.secret_keys, settings.approval_link_ttl, base, attempt, wanted,
                                   issuer=me.actor)
                issued = ApprovalLinks(approver=made.approver, resume=made.resume, cancel=made.cancel,
                                       expires_at=made.expires_at)
            except NotAllowed as exc:
                if query.approver:
                    raise
                refused = str(exc)
        rule = approval.approvers
        items.append(WaitingApproval(
            step=attempt.path, description=approval.description,
            form={name: FormFieldAnswer(**f.model_dump()) for name, f in approval.form.items()},
            approvers={"roles": list(rule.roles), "tokens": list(rule.tokens)} if rule else None,
            self_approval=approval.self_approval, on_timeout=approval.on_timeout, timeout_at=attempt.resume_at,
            links=issued, **({"links_refused": refused} if refused else {})))
    return answer(ApprovalList(items=items))


def _check_may_issue(me: Principal, wanted: str) -> None:
    """Links decide as their approver: an admin may have them made for anyone the rule allows
    (it can make tokens anyway); anyone else only for their own token or role."""
    if me.operator or me.may(Permission.ADMIN):
        return
    kind, _, name = wanted.partition(":")
    own = (kind == "role" and name == me.role.value) or (kind == "token" and name in (me.name, str(me.token_id)))
    if not own:
        raise NotAllowed(f"only an admin gets links for {wanted}; ask for your own (token:{me.name} or "
                         f"role:{me.role.value})")

