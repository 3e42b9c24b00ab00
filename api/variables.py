"""/api/v1/variables: named values and secrets for flows; a secret's value is never returned."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from api import context
from api.auth import principal, requires
from api.responses import Variable, VariablePage
from api.schemas import Paged, SetVariable, accepts, answer, query, returns
from orchestrator.store import variables
from orchestrator.store.access import Permission

blueprint = Blueprint("variables", __name__, url_prefix="/variables")


def _variable(row: dict[str, Any]) -> Variable:
    if row["secret"]:  # no value at all, not even null
        return Variable(name=row["name"], secret=True, updated_at=row["updated_at"])
    return Variable(name=row["name"], secret=False, value=row["value"], updated_at=row["updated_at"])


@blueprint.get("")
@requires(Permission.READ)
@returns(200, VariablePage)
@query(Paged)
def list_variables(query: Paged) -> Response:
    """Variables by name with their values, and secrets without."""
    rows = variables.list_variables(context.engine(), after=query.cursor or "", limit=query.limit)
    return answer(VariablePage(items=[_variable(r) for r in rows],
                               next_cursor=rows[-1]["name"] if len(rows) == query.limit else None))


@blueprint.get("/<name>")
@requires(Permission.READ)
@returns(200, Variable)
def get_variable(name: str) -> Response:
    """One variable, or one secret without its value."""
    return answer(_variable(variables.get_variable(context.engine(), name)))


@blueprint.put("/<name>")
@requires(Permission.VARIABLES)
@returns(204)
@accepts(SetVariable)
def put_variable(name: str, body: SetVariable) -> Response:
    """Set a variable, or a secret: a secret's value is never returned."""
    variables.set_variable(context.engine(), name, body.value, secret=body.secret,
                           keys=context.settings().secret_keys, actor=principal().actor)
    return Response(status=204)


@blueprint.delete("/<name>")
@requires(Permission.VARIABLES)
@returns(204)
def delete_variable(name: str) -> Response:
    """Delete a variable or secret."""
    variables.delete_variable(context.engine(), name, principal().actor)
    return Response(status=204)
