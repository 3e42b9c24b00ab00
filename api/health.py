"""Liveness and readiness, without a token; Prometheus metrics, with one."""
from __future__ import annotations

from flask import Blueprint, Response
from kombu import Connection

from api import context
from api.auth import protected_blueprint, requires
from api.errors import problem
from api.responses import Health, Ready
from api.schemas import answer, fails, returns
from orchestrator.observe.metrics import CONTENT_TYPE, exposition
from orchestrator.store.access import Permission
from orchestrator.store.database import ping

blueprint = Blueprint("health", __name__)
metrics_blueprint = protected_blueprint("ops", "")  # /metrics: scrape with a viewer's token


@blueprint.get("/healthz")
@returns(200, Health)
def healthz() -> Response:
    """The process is up (it answers without the database)."""
    return answer(Health(status="ok"))


@metrics_blueprint.get("/metrics")
@requires(Permission.READ)
@returns(200, media="text/plain")
def metrics() -> Response:
    """Prometheus metrics: runs by flow and status, step durations, queue latency, scheduler lag."""
    return Response(exposition(context.engine()), content_type=CONTENT_TYPE)


@blueprint.get("/readyz")
@returns(200, Ready)
@fails(503)
def readyz() -> Response:
    """The database and the broker answer."""
    checks: dict[str, str] = {}
    try:
        ping(context.engine())
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        with Connection(context.settings().broker_url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        checks["broker"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    if all(v == "ok" for v in checks.values()):
        return answer(Ready(status="ready", checks=checks))
    return problem(503, "Not ready", ", ".join(f"{k} {v}" for k, v in checks.items()), checks=checks)
