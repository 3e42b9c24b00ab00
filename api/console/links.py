"""The pages an approval's signed link opens: no session, no token; the link is the credential
(for one approver, one use, until it expires). GET shows the form, POST decides."""
from __future__ import annotations

from typing import Any

from flask import abort, render_template, request

from api import context
from api.console import _same_origin, blueprint
from orchestrator.definitions.approvals import values_from_text
from orchestrator.services import links
from orchestrator.services.approvals import approval_of
from orchestrator.store.sql import now

# The link never leaks to another site (same-origin keeps the Origin its own POST needs).
LINK_HEADERS = {"Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


def _opened(token: str) -> links.Opened:
    return links.open_link(context.publisher(), context.settings().secret_keys, token, now())


@blueprint.get("/approvals/<token>")
def approval_link(token: str) -> Any:
    opened = _opened(token)
    approval = approval_of(context.publisher(), opened.attempt)
    return render_template("approval_link.html", opened=opened, approval=approval, token=token), 200, LINK_HEADERS


@blueprint.post("/approvals/<token>")
def follow_approval_link(token: str) -> Any:
    if not _same_origin():
        abort(403, "decide from the link's own page")
    opened = _opened(token)
    publisher = context.publisher()
    approval = approval_of(publisher, opened.attempt)
    approve = request.form.get("decision") == "approve"
    reason = (request.form.get("reason") or "")[:2000] or None
    values = values_from_text(approval, request.form) if approve and approval.form else None
    links.follow(publisher, context.revoke(), opened, approve=approve, values=values, reason=reason)
    done = "cancelled" if opened.claims.action == "cancel" else ("approved" if approve else "rejected")
    return render_template("approval_done.html", opened=opened, done=done), 200, LINK_HEADERS
