"""Every mutating API call leaves an audit event naming who did it. The walk below makes one
successful call per POST/PUT/PATCH/DELETE route the app serves, and fails when a route is
added without being walked here (and so without its event being checked)."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from orchestrator.store import audit
from orchestrator.store.access import Role, create_token

pytestmark = pytest.mark.integration

# The one mutating-method route that changes nothing: it checks a document and keeps nothing.
CHANGES_NOTHING = {"v1.flows.validate_flow"}

FLOW = """id: audit/walk
steps:
  - {id: gate, approval: {}}
  - {id: after, bash: echo done}
"""


@pytest.fixture(scope="module")
def client(engine, worker):
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    return create_app(load_settings(), engine, send, revoke).test_client()


def test_every_mutating_call_leaves_an_audit_event_with_its_actor(client, engine) -> None:
    admin = {"Authorization": f"Bearer {create_token(engine, 'audit-walker', Role.ADMIN)}"}
    actor = "token:audit-walker"
    app = client.application
    adapter = app.url_map.bind("localhost")
    walked: set[str] = set()

    def call(method: str, url: str, expected_action: str, *, who: str = actor, headers: dict | None = None,
             **kwargs) -> dict:
        before = _last_event_id(engine)
        response = client.open(url, method=method, headers=headers or admin, **kwargs)
        assert 200 <= response.status_code < 300, (method, url, response.status_code, response.json)
        walked.add(adapter.match(url.split("?")[0], method=method)[0])
        events = audit.list_audit(engine, after_id=before, limit=100)
        assert (expected_action, who) in {(e["action"], e["actor"]) for e in events}, (method, url, events)
        return response.json if response.data else {}

    def run_waiting() -> str:
        run = call("POST", "/api/v1/flows/audit/walk/runs", "run.created", json={})
        _until(client, admin, run["id"], "suspended")
        return run["id"]

    call("PUT", "/api/v1/flows/audit/walk", "flow.saved", data=FLOW, content_type="application/yaml")
    call("PUT", "/api/v1/scripts/audit/double", "script.saved",
         json={"language": "python", "code": "def main(x: int) -> int:\n    return 2 * x"})
    call("PUT", "/api/v1/variables/audit_var", "variable.set", json={"value": 1})
    approved = run_waiting()
    call("POST", f"/api/v1/runs/{approved}/steps/gate/approve", "step.approved", json={})
    _until(client, admin, approved, "succeeded")
    rejected = run_waiting()
    call("POST", f"/api/v1/runs/{rejected}/steps/gate/reject", "step.rejected", json={"reason": "no"})
    _until(client, admin, rejected, "failed")
    again = call("POST", f"/api/v1/runs/{rejected}/restart", "run.created", json={"from": "gate"})["id"]
    _until(client, admin, again, "suspended")
    call("POST", f"/api/v1/runs/{again}/cancel", "run.cancelled", json={})
    hook = call("PUT", "/api/v1/flows/audit/walk/webhook", "webhook.enabled")["token"]
    call("POST", "/api/v1/hooks/audit/walk", "run.created", who="webhook:audit/walk",
         headers={"Authorization": f"Bearer {hook}"}, json={})
    call("DELETE", "/api/v1/flows/audit/walk/webhook", "webhook.disabled")
    schedule = call("POST", "/api/v1/schedules", "schedule.created",
                    json={"flow": "audit/walk", "cron": "0 9 * * *", "enabled": False})["id"]
    call("PATCH", f"/api/v1/schedules/{schedule}", "schedule.updated", json={"cron": "0 10 * * *"})
    call("POST", f"/api/v1/schedules/{schedule}/backfill", "schedule.backfilled",
         json={"start": "2026-11-02T00:00:00Z", "end": "2026-11-02T11:00:00Z"})
    call("DELETE", f"/api/v1/schedules/{schedule}", "schedule.deleted")
    call("POST", "/api/v1/tokens", "token.created", json={"name": "audit-robot", "role": "viewer"})
    robot = next(t["id"] for t in client.get("/api/v1/tokens", headers=admin).json["items"]
                 if t["name"] == "audit-robot")
    call("DELETE", f"/api/v1/tokens/{robot}", "token.revoked")
    call("DELETE", "/api/v1/variables/audit_var", "variable.deleted")
    call("DELETE", "/api/v1/scripts/audit/double", "script.deleted")
    call("DELETE", "/api/v1/flows/audit/walk", "flow.deleted")

    mutating = {rule.endpoint for rule in app.url_map.iter_rules()
                if rule.rule.startswith("/api/v1") and rule.methods & {"POST", "PUT", "PATCH", "DELETE"}}
    assert mutating - CHANGES_NOTHING == walked


def _last_event_id(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT coalesce(max(id), 0) FROM audit_events")).scalar()


def _until(client, headers: dict, run_id: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (run := client.get(f"/api/v1/runs/{run_id}", headers=headers).json)["status"] != status:
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
