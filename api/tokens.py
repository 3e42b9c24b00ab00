"""/api/v1/tokens: admins create, list and revoke API tokens; a token is shown once."""
from __future__ import annotations

from flask import Blueprint, Response

from api import context
from api.auth import principal, requires
from api.responses import NewTokenMade, Token, TokenPage
from api.schemas import MAX_ID, NewToken, Paged, accepts, answer, number_cursor, query, returns
from orchestrator.errors import NotFound
from orchestrator.store.access import Permission, authenticate, create_token, list_tokens, revoke_token

blueprint = Blueprint("tokens", __name__, url_prefix="/tokens")


@blueprint.post("")
@requires(Permission.ADMIN)
@returns(201, NewTokenMade)
@accepts(NewToken)
def create_api_token(body: NewToken) -> Response:
    """Create a token for a role; the token is in this answer and nowhere else."""
    token = create_token(context.engine(), body.name, body.role, actor=principal().actor,
                         secret_scope=tuple(body.secrets))
    made = authenticate(context.engine(), token)
    assert made is not None  # just created
    return answer(NewTokenMade(id=made.token_id, name=body.name, role=body.role, secrets=body.secrets,
                               token=token), 201)


@blueprint.get("")
@requires(Permission.ADMIN)
@returns(200, TokenPage)
@query(Paged)
def list_api_tokens(query: Paged) -> Response:
    """Tokens by id with their names, roles, secrets and dates; never the tokens themselves."""
    rows = list_tokens(context.engine(), after_id=number_cursor(query.cursor), limit=query.limit)
    items = [Token(id=t["id"], name=t["name"], role=t["role"], secrets=t["secrets"], created_at=t["created_at"],
                   revoked_at=t["revoked_at"]) for t in rows]
    return answer(TokenPage(items=items, next_cursor=str(rows[-1]["id"]) if len(rows) == query.limit else None))


@blueprint.delete("/<int:token_id>")
@requires(Permission.ADMIN)
@returns(204)
def revoke_api_token(token_id: int) -> Response:
    """Revoke a token: it stops working at once."""
    if token_id > MAX_ID:
        raise NotFound(f"token {token_id} does not exist")
    revoke_token(context.engine(), token_id, principal().actor)
    return Response(status=204)
