"""Every error is an RFC 9457 problem document: JSON, one status per error type, no traceback."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from orchestrator.errors import Conflict, FlowError, NotFound, ValidationError

log = logging.getLogger("millrace.api")


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


def register(app: Flask) -> None:
    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError) -> Response:
        errors = [{"path": p.path, "message": p.message} for p in exc.problems]
        return problem(422, "Invalid document", f"{len(errors)} problem(s) found", errors=errors)

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> Response:
        return problem(404, "Not found", str(exc))

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict) -> Response:
        return problem(409, "Conflict", str(exc))

    @app.errorhandler(FlowError)
    def _flow_error(exc: FlowError) -> Response:
        return problem(400, "Bad request", str(exc))

    @app.errorhandler(Unauthorized)
    def _unauthorized(exc: Unauthorized) -> Response:
        return problem(401, "Unauthorized", str(exc))

    @app.errorhandler(Forbidden)
    def _forbidden(exc: Forbidden) -> Response:
        return problem(403, "Forbidden", str(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return problem(exc.code or 500, exc.name, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem(500, "Internal error", "the server failed to handle this request; it is logged")
