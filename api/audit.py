"""/api/v1/audit: the append-only record of transitions, decisions and definition changes."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth import requires
from orchestrator import records
from orchestrator.access import Permission

blueprint = Blueprint("audit", __name__, url_prefix="/audit")
MAX_PAGE = 500


@blueprint.get("")
@requires(Permission.READ)
def list_events() -> Response:
    """Audit events, oldest first, filtered by action prefix and target, paged with ``cursor``."""
    limit = min(max(request.args.get("limit", 100, type=int), 1), MAX_PAGE)
    rows = records.list_audit(context.engine(), action=request.args.get("action"),
                              target=request.args.get("target"), after_id=request.args.get("cursor", 0, type=int),
                              limit=limit)
    items = [{"id": r["id"], "at": r["at"].isoformat(), "actor": r["actor"], "action": r["action"],
              "target": r["target"], "details": r["details"]} for r in rows]
    return jsonify({"items": items, "next_cursor": rows[-1]["id"] if len(rows) == limit else None})
