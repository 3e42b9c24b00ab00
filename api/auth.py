"""Bearer tokens and permissions, checked in one place for every route under /api/v1.

A view states what it needs with :func:`requires`; a view that states nothing is refused,
so a new route cannot be left open by accident.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, current_app, g, request

from api import context
from api.errors import Forbidden, Unauthorized
from orchestrator.store.access import Permission, Principal, authenticate, operator

View = TypeVar("View", bound=Callable)
# A WSGI environ key no HTTP request can set (servers put headers under HTTP_*): the command
# line sets it when it calls the app in its own process, acting as the user at the terminal.
LOCAL_OPERATOR = "millrace.operator"

# The only endpoints served without a token: liveness, readiness, and the docs page (a page
# without data, which asks for a token and sends it with every request it makes).
PUBLIC = ("health.healthz", "health.readyz", "docs", "docs_assets", "v1.hooks.call_hook")
# A webhook call carries its flow's own hook token instead of an API token (api/hooks.py).


def requires(permission: Permission) -> Callable[[View], View]:
    def mark(view: View) -> View:
        view.millrace_permission = permission  # type: ignore[attr-defined]
        return view
    return mark


def permission_of(endpoint: str) -> Permission | None:
    view = current_app.view_functions.get(endpoint)
    return getattr(view, "millrace_permission", None)


def principal() -> Principal:
    return g.millrace_principal


def protected_blueprint(name: str, url_prefix: str) -> Blueprint:
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)

    @blueprint.before_request
    def _check() -> None:
        if request.endpoint in PUBLIC:
            return
        if (user := request.environ.get(LOCAL_OPERATOR)) is not None:
            g.millrace_principal = operator(user)  # the command line, in this process (never over HTTP)
            return
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send `Authorization: Bearer <token>` (create one with `millrace tokens create`)")
        found = authenticate(context.engine(), token.strip())
        if found is None:
            raise Unauthorized("unknown or revoked token")
        needed = permission_of(request.endpoint or "")
        if needed is None:
            raise Forbidden("this route declares no permission")
        if not found.may(needed):
            raise Forbidden(f"role '{found.role.value}' may not {needed.value}")
        g.millrace_principal = found

    return blueprint
