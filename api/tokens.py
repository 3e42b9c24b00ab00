"""/api/v1/tokens: admins create, list and revoke API tokens; a token is shown once."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api import context
from api.auth import principal, requires
from api.schemas import MAX_ID, NewToken, accepts, responds
from orchestrator.errors import NotFound
from orchestrator.store.access import Permission, create_token, list_tokens, revoke_token

blueprint = Blueprint("tokens", __name__, url_prefix="/tokens")


@blueprint.post("")
@requires(Permission.ADMIN)
@responds(201)
@accepts(NewToken)
def new_token(body: NewToken) -> Response:
    """Create a token for a role; the token is in this answer and nowhere else."""
    token = create_token(context.engine(), body.name, body.role, actor=principal().actor,
                         secret_scope=tuple(body.secrets))
    response = jsonify({"name": body.name, "role": body.role.value, "secrets": body.secrets, "token": token})
    response.status_code = 201
    return response


@blueprint.get("")
@requires(Permission.ADMIN)
def tokens() -> Response:
    """Every token's name, role and dates; never the tokens themselves."""
    return jsonify({"items": [{"id": t["id"], "name": t["name"], "role": t["role"], "secrets": t["secrets"],
                               "created_at": t["created_at"].isoformat(),
                               "revoked_at": t["revoked_at"].isoformat() if t["revoked_at"] else None}
                              for t in list_tokens(context.engine())]})


@blueprint.delete("/<int:token_id>")
@requires(Permission.ADMIN)
def revoke(token_id: int) -> Response:
    """Revoke a token: it stops working at once."""
    if token_id > MAX_ID:
        raise NotFound(f"token {token_id} does not exist")
    revoke_token(context.engine(), token_id, principal().actor)
    return Response(status=204)
