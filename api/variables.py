"""/api/v1/variables: named values and secrets for flows; a secret's value is never returned."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from api import context
from api.auth import principal, requires
from api.schemas import SetVariable, accepts, responds
from orchestrator.store import variables
from orchestrator.store.access import Permission

blueprint = Blueprint("variables", __name__, url_prefix="/variables")


def _json(row: dict[str, Any]) -> dict[str, Any]:
    out = {"name": row["name"], "secret": row["secret"], "updated_at": row["updated_at"].isoformat()}
    if not row["secret"]:
        out["value"] = row["value"]
    return out


@blueprint.get("")
@requires(Permission.READ)
def list_variables() -> Response:
    """Every variable with its value and every secret without."""
    return jsonify({"items": [_json(r) for r in variables.list_variables(context.engine())]})


@blueprint.get("/<name>")
@requires(Permission.READ)
def get_variable(name: str) -> Response:
    """One variable, or one secret without its value."""
    return jsonify(_json(variables.get_variable(context.engine(), name)))


@blueprint.put("/<name>")
@requires(Permission.VARIABLES)
@responds(204)
@accepts(SetVariable)
def put_variable(name: str, body: SetVariable) -> Response:
    """Set a variable, or a secret: a secret's value is never returned."""
    variables.set_variable(context.engine(), name, body.value, secret=body.secret,
                           keys=context.settings().secret_keys, actor=principal().actor)
    return Response(status=204)


@blueprint.delete("/<name>")
@requires(Permission.VARIABLES)
def delete_variable(name: str) -> Response:
    """Delete a variable or secret."""
    variables.delete_variable(context.engine(), name, principal().actor)
    return Response(status=204)
