"""Who may do what: roles, their permissions, and the API tokens that carry a role."""
from __future__ import annotations

import datetime as dt
import enum
import fnmatch
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from orchestrator.errors import NotFound
from orchestrator.store.audit import audit
from orchestrator.store.models import ApiToken, ConsoleSession, Webhook
from orchestrator.store.sql import now

api_tokens = ApiToken.__table__
webhooks = Webhook.__table__
TOKEN_PREFIX = "mr_"


class Permission(enum.StrEnum):
    READ = "read"  # flows, runs, logs, audit; not secrets
    DEFINE = "define"  # save and delete flows and scripts
    OPERATE = "operate"  # start, cancel, approve, restart runs
    VARIABLES = "variables"  # set variables and secrets
    ADMIN = "admin"  # tokens


class Role(enum.StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    OPERATOR = "operator"
    VIEWER = "viewer"

    @property
    def permissions(self) -> frozenset[Permission]:
        return _PERMISSIONS[self]


_PERMISSIONS = {
    Role.ADMIN: frozenset(Permission),
    Role.DEVELOPER: frozenset({Permission.READ, Permission.DEFINE, Permission.OPERATE, Permission.VARIABLES}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.OPERATE}),
    Role.VIEWER: frozenset({Permission.READ}),
}


@dataclass(frozen=True)
class Principal:
    """The holder of a token, as the API sees it."""

    token_id: int
    name: str
    role: Role
    secrets: tuple[str, ...] = ("*",)  # fnmatch patterns of the secrets its flows may read
    operator: str | None = None  # set for the command line on the server: acts as this user, not a token

    def may(self, permission: Permission) -> bool:
        return permission in self.role.permissions

    def may_read_secret(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.secrets)

    @property
    def actor(self) -> str:
        return self.operator or f"token:{self.name}"


def operator(user: str) -> Principal:
    """Who the command line acts as on the server (no token: the database's own rights,
    which whoever runs it there holds anyway); the audit trail names the user."""
    return Principal(0, user, Role.ADMIN, ("*",), operator=user)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, name: str, role: Role, actor: str = "cli",
                 secret_scope: tuple[str, ...] = ("*",)) -> str:
    """A new token for ``role``, whose flows may read the secrets ``secret_scope`` matches;
    the token itself is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(insert(api_tokens).values(name=name, role=role.value, token_hash=_digest(token),
                                               secrets=list(secret_scope), created_at=now()))
        audit(conn, actor, "token.created", f"token:{name}", role=role.value, secrets=list(secret_scope))
    return token


def list_tokens(engine: Engine, *, after_id: int = 0, limit: int | None = None) -> list[dict]:
    """Tokens by id (never the tokens themselves), ``limit`` after ``after_id``."""
    with engine.connect() as conn:
        rows = conn.execute(select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role, api_tokens.c.secrets,
                                   api_tokens.c.created_at, api_tokens.c.revoked_at)
                            .where(api_tokens.c.id > after_id).order_by(api_tokens.c.id).limit(limit)).mappings()
        return [dict(r) for r in rows]


def revoke_token(engine: Engine, token_id: int, actor: str) -> None:
    with engine.begin() as conn:
        row = conn.execute(update(api_tokens).where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                           .values(revoked_at=now()).returning(api_tokens.c.name)).first()
        if row is None:
            raise NotFound(f"no active token {token_id}")
        audit(conn, actor, "token.revoked", f"token:{row.name}")


def authenticate(engine: Engine, token: str) -> Principal | None:
    """The principal holding ``token``, or None for an unknown or revoked token."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with engine.connect() as conn:
        row = conn.execute(select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role, api_tokens.c.secrets).where(
            api_tokens.c.token_hash == _digest(token), api_tokens.c.revoked_at.is_(None))).first()
    return Principal(row.id, row.name, Role(row.role), tuple(row.secrets or ())) if row else None


def active_tokens(engine: Engine, name_or_id: str | int) -> list[Principal]:
    """The unrevoked tokens with this id (a number) or name: who an approval link is for."""
    column = api_tokens.c.id if str(name_or_id).isdigit() else api_tokens.c.name
    value = int(name_or_id) if column is api_tokens.c.id else str(name_or_id)
    with engine.connect() as conn:
        rows = conn.execute(select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role, api_tokens.c.secrets)
                            .where(column == value, api_tokens.c.revoked_at.is_(None))
                            .order_by(api_tokens.c.id)).all()
    return [Principal(r.id, r.name, Role(r.role), tuple(r.secrets or ())) for r in rows]


# --- webhooks ------------------------------------------------------------------------------

HOOK_PREFIX = "mh_"


def enable_webhook(engine: Engine, flow_id: str, actor: str, labels: dict[str, str] | None = None) -> str:
    """Give a saved flow a webhook, or a new token for the one it has (the old one stops
    working); the token is returned once and never stored. ``labels`` go on the runs it starts."""
    from orchestrator.store.versions import get_flow_version

    get_flow_version(engine, flow_id)  # NotFound for a flow that does not exist
    token = HOOK_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(delete(webhooks).where(webhooks.c.flow_id == flow_id))
        conn.execute(insert(webhooks).values(flow_id=flow_id, token_hash=_digest(token), created_at=now(),
                                             created_by=actor, labels=labels or None))
        audit(conn, actor, "webhook.enabled", f"flow:{flow_id}")
    return token


def disable_webhook(engine: Engine, flow_id: str, actor: str) -> None:
    with engine.begin() as conn:
        if not conn.execute(delete(webhooks).where(webhooks.c.flow_id == flow_id)).rowcount:
            raise NotFound(f"flow '{flow_id}' has no webhook")
        audit(conn, actor, "webhook.disabled", f"flow:{flow_id}")


def webhook_enabled(engine: Engine, flow_id: str) -> bool:
    """Whether ``flow_id`` has a webhook (its token is never readable again)."""
    with engine.connect() as conn:
        return conn.execute(select(webhooks.c.flow_id).where(webhooks.c.flow_id == flow_id)).first() is not None


def webhook_labels(engine: Engine, flow_id: str, token: str) -> dict[str, str] | None:
    """The labels ``flow_id``'s webhook puts on its runs when ``token`` is its current token;
    None when it is not (or the flow has no webhook)."""
    with engine.connect() as conn:
        stored = conn.execute(select(webhooks.c.token_hash, webhooks.c.labels)
                              .where(webhooks.c.flow_id == flow_id)).first()
    if stored is None or not hmac.compare_digest(stored.token_hash, _digest(token)):
        return None
    return stored.labels or {}


# --- console sessions ----------------------------------------------------------------------

console_sessions = ConsoleSession.__table__
SESSION_TTL = dt.timedelta(hours=12)


def open_session(engine: Engine, token: str, ttl: dt.timedelta = SESSION_TTL) -> tuple[str, Principal] | None:
    """A console session for the holder of ``token`` (None for an unknown or revoked one):
    its opaque id, which is all the cookie holds, and who it is."""
    found = authenticate(engine, token)
    if found is None:
        return None
    session_id = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(delete(console_sessions).where(console_sessions.c.expires_at < now()))  # the expired, tidied
        conn.execute(insert(console_sessions).values(id_hash=_digest(session_id), token_id=found.token_id,
                                                     csrf=secrets.token_urlsafe(32), created_at=now(),
                                                     expires_at=now() + ttl))
        audit(conn, found.actor, "console.signed_in", f"token:{found.name}")
    return session_id, found


def session_of(engine: Engine, session_id: str) -> tuple[Principal, str] | None:
    """Who a live session is and its form secret; None once it expired or its token was revoked."""
    with engine.connect() as conn:
        row = conn.execute(
            select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role, api_tokens.c.secrets,
                   console_sessions.c.csrf)
            .join(api_tokens, api_tokens.c.id == console_sessions.c.token_id)
            .where(console_sessions.c.id_hash == _digest(session_id), console_sessions.c.expires_at > now(),
                   api_tokens.c.revoked_at.is_(None))).first()
    if row is None:
        return None
    return Principal(row.id, row.name, Role(row.role), tuple(row.secrets or ())), row.csrf


def close_session(engine: Engine, session_id: str) -> None:
    with engine.begin() as conn:
        gone = conn.execute(delete(console_sessions).where(console_sessions.c.id_hash == _digest(session_id))
                            .returning(console_sessions.c.token_id)).first()
        if gone is not None:
            audit(conn, "console", "console.signed_out", f"token:{gone.token_id}")
