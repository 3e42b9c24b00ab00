"""Every error is an RFC 9457 problem document: JSON, one status per error type, no traceback."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from orchestrator.definitions.parser import LONE_SURROGATE
from orchestrator.errors import Conflict, FlowError, Gone, NotAllowed, NotFound, Problem, ValidationError

log = logging.getLogger("millrace.api")
RETRY_AFTER_S = 5  # what a client is told to wait while the database is away


class Unauthorized(Exception):
    """No valid bearer token."""


class Forbidden(Exception):
    """A valid token whose role does not allow this."""


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    response = jsonify({"type": "about:blank", "title": title, "status": status, "detail": detail, **extra})
    response.status_code = status
    response.mimetype = "application/problem+json"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="millrace"'
    return response


# One HTTP status per error type, in one place (ValidationError adds its `errors` list).
STATUS: dict[type[Exception], tuple[int, str]] = {
    ValidationError: (422, "Invalid document"),
    NotFound: (404, "Not found"),
    NotAllowed: (403, "Forbidden"),
    Gone: (410, "Gone"),
    Conflict: (409, "Conflict"),
    FlowError: (400, "Bad request"),
    Unauthorized: (401, "Unauthorized"),
    Forbidden: (403, "Forbidden"),
}


def register(app: Flask) -> None:
    def known(exc: Exception) -> Response:
        status, title = next(v for k, v in STATUS.items() if isinstance(exc, k))
        if isinstance(exc, ValidationError):
            errors = [{"path": p.path, "message": p.message} for p in exc.problems]
            return problem(status, title, f"{len(errors)} problem(s) found", errors=errors)
        return problem(status, title, str(exc))

    for error_type in STATUS:
        app.register_error_handler(error_type, known)

    @app.errorhandler(DataError)
    def _unstorable(exc: DataError) -> Response:
        # A value the database refuses (a number out of its range, say): the request's fault.
        # Checks at the edge name the place for known cases; this is the net beneath them.
        diag = getattr(getattr(exc, "orig", None), "diag", None)
        reason = getattr(diag, "message_primary", None) or "a value in the request cannot be stored"
        return problem(400, "Bad request", reason)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def _database_down(exc: DBAPIError) -> Response:
        # The database is unreachable (or went away mid-request): nothing was changed that
        # a retry would change twice (each write is a transaction); say when to try again.
        log.warning("database unavailable: %s", getattr(exc, "orig", exc))
        response = problem(503, "Service unavailable", "the database is unreachable; try again shortly")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.before_request
    def _printable_url() -> None:
        from flask import request

        for place, text in (("path", request.path), *((f"query {k}", v) for k, v in request.args.items(multi=True))):
            if "\x00" in text or LONE_SURROGATE.search(text):
                raise ValidationError([Problem(place, "the URL contains a NUL or an undecodable character")])
        if "token" in request.args and request.endpoint not in ("docs", "docs_assets"):
            raise ValidationError([Problem("token", "send tokens in the Authorization header (Bearer) or, for "
                                                    "a webhook, X-Millrace-Token; never in the URL: URLs are "
                                                    "written to access logs; rotate this token now")])
        view = app.view_functions.get(request.endpoint or "")
        if request.args and view is not None and not hasattr(view, "millrace_query") and request.endpoint not in (
                "docs", "docs_assets") and request.blueprint != "console":  # the console's pages read their own
            # a route that reads no query parameter refuses them, as the others refuse unknown ones
            raise ValidationError([Problem(name, "this route takes no query parameters") for name in request.args])

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return problem(exc.code or 500, exc.name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem(500, "Internal error", "the server failed to handle this request; it is logged")
