"""Webhooks: a flow's own URL and secret token; the JSON body becomes the run's inputs.

``PUT /api/v1/flows/{id}/webhook`` (developers) enables it and returns the token once (again:
a new token, the old one stops working); ``POST /api/v1/hooks/{id}`` with that token in
``Authorization: Bearer`` or ``X-Millrace-Token`` starts a run (a token in the URL is
refused: URLs end up in access logs and proxies' histories), answering like
the runs API (202, or 200 with ``?wait=`` when the run ends in time).
"""
from __future__ import annotations

from flask import Blueprint, Response, request, url_for
from pydantic import Field
from werkzeug.exceptions import UnsupportedMediaType

from api import context
from api.auth import principal, requires
from api.errors import Unauthorized
from api.responses import Run, RunAccepted, Webhook
from api.runs import Idempotent, Wait, start_and_answer
from api.schemas import Body, accepts, answer, fails, headers, query, returns
from orchestrator.definitions.labels import Labels
from orchestrator.definitions.parser import check_storable
from orchestrator.errors import Problem, ValidationError
from orchestrator.store.access import Permission, disable_webhook, enable_webhook, webhook_labels

blueprint = Blueprint("hooks", __name__)


class WebhookConfig(Body):
    """What the runs a webhook starts carry."""

    labels: Labels = Field(default_factory=dict, description="over the flow's labels, on every run it starts")


@blueprint.put("/flows/<path:flow_id>/webhook")
@requires(Permission.DEFINE)
@returns(201, Webhook)
@accepts(WebhookConfig)
def put_webhook(flow_id: str, body: WebhookConfig) -> Response:
    """Enable the flow's webhook (its runs labelled with `labels`), or rotate its token; the
    token is shown this once."""
    token = enable_webhook(context.engine(), flow_id, principal().actor, body.labels)
    return answer(Webhook(flow=flow_id, url=url_for("v1.hooks.call_hook", flow_id=flow_id, _external=True),
                          token=token), 201)


@blueprint.delete("/flows/<path:flow_id>/webhook")
@requires(Permission.DEFINE)
@returns(204)
def delete_webhook(flow_id: str) -> Response:
    """Disable the flow's webhook: its URL answers 401 from now on."""
    disable_webhook(context.engine(), flow_id, principal().actor)
    return Response(status=204)


@blueprint.post("/hooks/<path:flow_id>")
@returns(202, RunAccepted, headers={"Location": "the run's URL"})
@returns(200, Run)
@fails(409)
@query(Wait)
@headers(Idempotent)
def call_hook(flow_id: str, query: Wait, headers: Idempotent) -> Response:
    """Start a run of the flow with the JSON body as its inputs (needs the webhook's token)."""
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    token = (bearer.strip() if scheme.lower() == "bearer" else "") or request.headers.get("X-Millrace-Token")
    labels = webhook_labels(context.engine(), flow_id, token) if token else None
    if labels is None:
        raise Unauthorized("this webhook needs its token (Authorization: Bearer or X-Millrace-Token)")
    if (request.content_length or request.data) and request.mimetype != "application/json":
        raise UnsupportedMediaType(f"send the run's inputs as JSON (Content-Type: application/json), "
                                   f"not '{request.mimetype or 'none'}'")
    try:
        inputs = request.get_json(silent=True) if request.content_length or request.data else {}
        check_storable(inputs)
    except RecursionError:
        raise ValidationError([Problem("", "the body nests too deeply")]) from None
    if inputs is None:
        raise ValidationError([Problem("", "the body is not JSON: send the run's inputs as a JSON object")])
    if not isinstance(inputs, dict):
        raise ValidationError([Problem("", "the body must be a JSON object: the run's inputs")])
    return start_and_answer(flow_id, inputs, None, trigger="webhook", actor=f"webhook:{flow_id}",
                            wait=query.wait, key=headers.idempotency_key, labels=labels)


call_hook.millrace_security = "hook"  # type: ignore[attr-defined]  # its own token, not an API token
call_hook.millrace_free_body = True  # type: ignore[attr-defined]  # any JSON object: the flow's inputs
