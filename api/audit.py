"""/api/v1/audit: the append-only record of transitions, decisions and definition changes."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth import requires
from api.schemas import MAX_ID, query_number
from orchestrator.store import audit
from orchestrator.store.access import Permission

blueprint = Blueprint("audit", __name__, url_prefix="/audit")
MAX_PAGE = 500


@blueprint.get("")
@requires(Permission.READ)
def list_events() -> Response:
    """Audit events, oldest first, filtered by action prefix and target, paged with ``cursor``."""
    limit = query_number("limit", int, 100, low=1, high=MAX_PAGE)
    after = query_number("cursor", int, 0, low=0, high=MAX_ID)
    rows = audit.list_audit(context.engine(), action=request.args.get("action"),
                              target=request.args.get("target"), after_id=after, limit=limit)
    items = [{"id": r["id"], "at": r["at"].isoformat(), "actor": r["actor"], "action": r["action"],
              "target": r["target"], "details": r["details"]} for r in rows]
    # a string, as every list's cursor is (it reads back as the same number)
    return jsonify({"items": items, "next_cursor": str(rows[-1]["id"]) if len(rows) == limit else None})
