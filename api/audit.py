"""/api/v1/audit: the append-only record of transitions, decisions and definition changes."""
from __future__ import annotations

from flask import Blueprint, Response
from pydantic import Field

from api import context
from api.auth import requires
from api.responses import AuditEvent, AuditPage
from api.schemas import Paged, answer, number_cursor, query, returns
from orchestrator.store import audit
from orchestrator.store.access import Permission

blueprint = Blueprint("audit", __name__, url_prefix="/audit")
MAX_PAGE = 500


class AuditFilter(Paged):
    limit: int = Field(default=100, ge=1, le=MAX_PAGE, description="how many events, at most")
    action: str | None = Field(default=None, max_length=64, description="only actions starting with this, "
                                                                       "e.g. `run.` or `token.created`")
    target: str | None = Field(default=None, max_length=300, description="only this target, e.g. `run:<id>`")


@blueprint.get("")
@requires(Permission.READ)
@returns(200, AuditPage)
@query(AuditFilter)
def list_events(query: AuditFilter) -> Response:
    """Audit events, oldest first, filtered by action prefix and target."""
    rows = audit.list_audit(context.engine(), action=query.action, target=query.target,
                            after_id=number_cursor(query.cursor), limit=query.limit)
    items = [AuditEvent(id=r["id"], at=r["at"], actor=r["actor"], action=r["action"], target=r["target"],
                        details=r["details"]) for r in rows]
    return answer(AuditPage(items=items, next_cursor=str(rows[-1]["id"]) if len(rows) == query.limit else None))
