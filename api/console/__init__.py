"""The console: server-rendered pages at ``/`` over the same records, roles and services as
the API; a session opened with an API token (the cookie holds an opaque id, never the token).

Pages are Jinja templates (``templates/``) with a small script of our own (``static/``) that
polls one indexed query for the live parts; every asset ships in the package."""
from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, g, redirect, render_template, request, url_for
from sqlalchemy.exc import InterfaceError, OperationalError

from api import context
from orchestrator.errors import Conflict, FlowError, Gone, NotAllowed, NotFound, ValidationError
from orchestrator.store.access import Permission, close_session, session_of

View = TypeVar("View", bound=Callable[..., Any])
COOKIE = "millrace_session"
blueprint = Blueprint("console", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/console/static")
# The only pages without a session: signing in, the assets, and the pages an approval link
# opens (the signed link is their credential, api/console/links.py).
OPEN = ("console.sign_in", "console.static", "console.approval_link", "console.follow_approval_link")


LOCAL_TARGET = re.compile(r"/(?![/\\])[^\x00-\x20\\]*")  # a path of this site: no host, no control character


def local_target(raw: str | None, default: str) -> str:
    """``raw`` if it is a path of this site (never another host, however written), else ``default``."""
    return raw if raw and LOCAL_TARGET.fullmatch(raw) else default


def _same_origin() -> bool:
    """Whether a POST comes from the console's own pages (the browser says where from)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or (origin != "null" and urlsplit(origin).netloc == request.host)


@blueprint.before_request
def _signed_in() -> Response | None:
    if request.endpoint == "console.sign_in" and request.method == "POST" and not _same_origin():
        abort(403, "sign in from the console's own page")  # no other site signs a browser in
    if request.endpoint in OPEN:
        return None
    found = session_of(context.engine(), request.cookies.get(COOKIE, "")) if request.cookies.get(COOKIE) else None
    if found is None:  # none, expired, or its token revoked: sign in again
        return redirect(url_for("console.sign_in", next=request.full_path if request.method == "GET" else None))
    g.millrace_principal, g.console_csrf = found
    if request.method == "POST" and not hmac.compare_digest(request.form.get("csrf", "").encode(),
                                                            g.console_csrf.encode()):
        abort(403, "this form is stale or was not made by the console: reload the page and try again")
    return None


def needs(permission: Permission) -> Callable[[View], View]:
    """A console action the role must allow (the page hides its button otherwise; this is the check)."""

    def wrap(view: View) -> View:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            if not g.millrace_principal.may(permission):
                abort(403, f"role '{g.millrace_principal.role.value}' may not {permission.value}")
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return wrap


@blueprint.app_context_processor
def _helpers() -> dict[str, Any]:
    principal = g.get("millrace_principal")
    return {"me": principal, "csrf": g.get("console_csrf", ""),
            "may": (lambda name: principal is not None and principal.may(Permission(name)))}


def _page_error(status: int, title: str, detail: str, retry: bool = False) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, detail=detail, retry=retry), status


@blueprint.errorhandler(OperationalError)
@blueprint.errorhandler(InterfaceError)
def _database_down(exc: Exception) -> tuple[str, int]:
    return _page_error(503, "The database is unreachable",
                       "Millrace cannot read its records right now. This page tries again every 5 seconds.",
                       retry=True)


@blueprint.errorhandler(NotFound)
def _not_found(exc: NotFound) -> tuple[str, int]:
    return _page_error(404, "Not found", str(exc))


@blueprint.errorhandler(Conflict)
@blueprint.errorhandler(FlowError)
def _refused(exc: FlowError) -> tuple[str, int]:
    if isinstance(exc, ValidationError):
        return _page_error(422, "Not accepted", "; ".join(str(p) for p in exc.problems))
    if isinstance(exc, NotAllowed):
        return _page_error(403, "Not allowed", str(exc))
    if isinstance(exc, Gone):
        return _page_error(410, "No longer valid", str(exc))
    return _page_error(409 if isinstance(exc, Conflict) else 400, "Not done", str(exc))


@blueprint.errorhandler(403)
@blueprint.errorhandler(404)
@blueprint.errorhandler(405)
def _http(exc: Any) -> tuple[str, int]:
    return _page_error(exc.code, exc.name, exc.description)


@blueprint.post("/sign-out")
def sign_out() -> Response:
    close_session(context.engine(), request.cookies.get(COOKIE, ""))
    response = redirect(url_for("console.sign_in"))
    response.delete_cookie(COOKIE, path="/")
    return response


from api.console import links, pages  # noqa: E402,F401 - the routes, registered on the blueprint
