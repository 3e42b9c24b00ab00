"""/api/v1/variables: named values and secrets for flows; a secret's value is never returned."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api import context
from api.auth import principal, requires
from orchestrator import variables
from orchestrator.access import Permission
from orchestrator.errors import Problem, ValidationError

blueprint = Blueprint("variables", __name__, url_prefix="/variables")


def _json(row: dict[str, Any]) -> dict[str, Any]:
    out = {"name": row["name"], "secret": row["secret"], "updated_at": row["updated_at"].isoformat()}
    if not row["secret"]:
        out["value"] = row["value"]
    return out


@blueprint.get("")
@requires(Permission.READ)
def list_variables() -> Response:
    return jsonify({"items": [_json(r) for r in variables.list_variables(context.engine())]})


@blueprint.get("/<name>")
@requires(Permission.READ)
def get_variable(name: str) -> Response:
    return jsonify(_json(variables.get_variable(context.engine(), name)))


@blueprint.put("/<name>")
@requires(Permission.VARIABLES)
def put_variable(name: str) -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "value" not in body:
        raise ValidationError([Problem("", 'send a JSON object {"value": ..., "secret": false}')])
    unknown = sorted(set(body) - {"value", "secret"})
    if unknown:
        raise ValidationError([Problem(k, "unknown field") for k in unknown])
    secret = body.get("secret", False)
    if not isinstance(secret, bool):
        raise ValidationError([Problem("secret", "expected true or false")])
    variables.set_variable(context.engine(), name, body["value"], secret=secret,
                           keys=context.settings().secret_keys, actor=principal().actor)
    return Response(status=204)


@blueprint.delete("/<name>")
@requires(Permission.VARIABLES)
def delete_variable(name: str) -> Response:
    variables.delete_variable(context.engine(), name, principal().actor)
    return Response(status=204)
