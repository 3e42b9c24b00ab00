"""Webhooks: a flow's own URL and secret token; the JSON body becomes the run's inputs.

``PUT /api/v1/flows/{id}/webhook`` (developers) enables it and returns the token once (again:
a new token, the old one stops working); ``POST /api/v1/hooks/{id}`` with that token in
``Authorization: Bearer`` or ``X-Millrace-Token`` starts a run (a token in the URL is
refused: URLs end up in access logs and proxies' histories), answering like
the runs API (202, or 200 with ``?wait=`` when the run ends in time).
"""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, url_for

from api import context
from api.auth import principal, requires
from api.errors import Unauthorized
from api.runs import start_and_answer
from api.schemas import responds
from orchestrator.definitions.parser import check_storable
from orchestrator.errors import Problem, ValidationError
from orchestrator.store.access import Permission, disable_webhook, enable_webhook, webhook_accepts

blueprint = Blueprint("hooks", __name__)


@blueprint.put("/flows/<path:flow_id>/webhook")
@requires(Permission.DEFINE)
@responds(201)
def put_webhook(flow_id: str) -> Response:
    """Enable the flow's webhook, or rotate its token; the token is shown this once."""
    token = enable_webhook(context.engine(), flow_id, principal().actor)
    response = jsonify({"flow": flow_id, "url": url_for("v1.hooks.call_hook", flow_id=flow_id, _external=True),
                        "token": token})
    response.status_code = 201
    return response


@blueprint.delete("/flows/<path:flow_id>/webhook")
@requires(Permission.DEFINE)
def delete_webhook(flow_id: str) -> Response:
    """Disable the flow's webhook: its URL answers 401 from now on."""
    disable_webhook(context.engine(), flow_id, principal().actor)
    return Response(status=204)


@blueprint.post("/hooks/<path:flow_id>")
@responds(202, 200)
def call_hook(flow_id: str) -> Response:
    """Start a run of the flow with the JSON body as its inputs (needs the webhook's token)."""
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    if "token" in request.args:
        raise ValidationError([Problem("token", "send the webhook's token in the Authorization header (Bearer) "
                                                "or X-Millrace-Token, never in the URL: URLs are written to "
                                                "access logs; rotate this token now (PUT .../webhook)")])
    token = (bearer.strip() if scheme.lower() == "bearer" else "") or request.headers.get("X-Millrace-Token")
    if not token or not webhook_accepts(context.engine(), flow_id, token):
        raise Unauthorized("this webhook needs its token (Authorization: Bearer or X-Millrace-Token)")
    try:
        inputs = request.get_json(silent=True) if request.content_length or request.data else {}
        check_storable(inputs)
    except RecursionError:
        raise ValidationError([Problem("", "the body nests too deeply")]) from None
    if not isinstance(inputs, dict):
        raise ValidationError([Problem("", "the body must be a JSON object: the run's inputs")])
    return start_and_answer(flow_id, inputs, None, trigger="webhook", actor=f"webhook:{flow_id}")


call_hook.millrace_security = "hook"  # type: ignore[attr-defined]  # its own token, not an API token
call_hook.millrace_free_body = True  # type: ignore[attr-defined]  # any JSON object: the flow's inputs
