"""Liveness and readiness, without a token; Prometheus metrics, with one."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response
from kombu import Connection

from api import context
from api.auth import protected_blueprint, requires
from api.errors import problem
from api.responses import Health, Ready
from api.schemas import answer, fails, returns
from orchestrator.observe.metrics import CONTENT_TYPE, exposition
from orchestrator.store import event_triggers, leases
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
    """The database and the broker answer (503 when not); `degraded` when an event trigger is not consuming.

    With event triggers declared, `checks.listener` says whether a `millrace listener` leads and
    `checks.event_triggers` how many are not connected (which, and why: `GET /api/v1/event-triggers`,
    with a token; this route answers anyone, so it names no flow and quotes no error)."""
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
    if not all(v == "ok" for v in checks.values()):
        return problem(503, "Not ready", ", ".join(f"{k} {v}" for k, v in checks.items()), checks=checks)
    listening = _listener_checks()
    return answer(Ready(status="ready" if all(v == "ok" for v in listening.values()) else "degraded",
                        checks=checks | listening))


def _listener_checks() -> dict[str, str]:
    """The event triggers' side of readiness: a listener leads and each trigger is connected.
    Runs started through the API, schedules and webhooks need none of it, so it degrades,
    never fails, readiness."""
    engine = context.engine()
    rows = event_triggers.active(engine)
    if not rows:
        return {}
    checks = {"listener": "ok" if leases.is_held(engine, leases.LISTENER) is not False
              else "no `millrace listener` leads: event triggers start no runs"}
    now = dt.datetime.now(dt.UTC)
    down = sum(row.state_now(now) != "connected" for row in rows)
    checks["event_triggers"] = "ok" if not down else (f"{down} of {len(rows)} not connected; "
                                                      "GET /api/v1/event-triggers says which and why")
    return checks
