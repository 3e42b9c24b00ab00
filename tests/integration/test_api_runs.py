"""Runs over HTTP: start and wait, start and poll, approve, with the roles that may."""
from __future__ import annotations

import time

import pytest

from orchestrator.store.access import Role, create_token

pytestmark = pytest.mark.integration

FLOW = """id: api/runs
inputs:
  n: {type: integer, default: 2}
steps:
  - id: double
    python: "def main(n: int) -> int:\\n    return n * 2"
    with: {n: "${{ inputs.n }}"}
"""
GATED = """id: api/gated
steps:
  - id: gate
    approval: {}
  - id: after
    bash: echo shipped
"""


def until_status(client, url: str, headers: dict, status: str, timeout: float = 30) -> dict:
    """Poll a run until it has ``status``; returns it."""
    deadline = time.monotonic() + timeout
    while (run := client.get(url, headers=headers).json)["status"] != status:
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    return run


@pytest.fixture(scope="module")
def client(engine, worker):
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    app = create_app(load_settings(), engine, send, revoke)
    client = app.test_client()
    developer = create_token(engine, "runs-dev", Role.DEVELOPER)
    for text, flow_id in ((FLOW, "api/runs"), (GATED, "api/gated")):
        saved = client.put(f"/api/v1/flows/{flow_id}", data=text,
                           headers={"Authorization": f"Bearer {developer}", "Content-Type": "application/yaml"})
        assert saved.status_code in (200, 201), saved.json
    return client


@pytest.fixture(scope="module")
def operator(engine) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(engine, 'runs-op', Role.OPERATOR)}"}


def test_run_and_wait_returns_the_finished_run(client, operator) -> None:
    response = client.post("/api/v1/flows/api/runs/runs?wait=30", json={"inputs": {"n": 21}}, headers=operator)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "succeeded" and response.json["result"] == 42
    assert [(s["path"], s["status"], s["attempt"]) for s in response.json["steps"]] == [("double", "succeeded", 1)]


def test_run_async_then_poll(client, operator) -> None:
    started = client.post("/api/v1/flows/api/runs/runs", json={}, headers=operator)
    assert started.status_code == 202 and started.headers["Location"] == started.json["links"]["self"]
    run = until_status(client, started.json["links"]["self"], operator, "succeeded")
    assert run["result"] == 4 and run["inputs"] == {"n": 2} and run["trigger"] == "api"


def test_approval_through_the_api(client, operator) -> None:
    started = client.post("/api/v1/flows/api/gated/runs", headers=operator)
    run_url = started.json["links"]["self"]
    until_status(client, run_url, operator, "suspended")
    decided = client.post(f"/api/v1/runs/{started.json['id']}/steps/gate/approve", json={"reason": "looks good"},
                          headers=operator)
    assert decided.status_code == 200
    again = client.post(f"/api/v1/runs/{started.json['id']}/steps/gate/approve", headers=operator)
    assert again.status_code == 404  # no step of that run waits any more
    assert until_status(client, run_url, operator, "succeeded")["result"] == "shipped"


@pytest.mark.parametrize(("path", "body", "status", "where"), [
    ("/api/v1/flows/api/runs/runs", {"inputs": {"n": "two"}}, 422, "inputs.n"),
    ("/api/v1/flows/api/runs/runs", {"inputs": {"m": 1}}, 422, "inputs.m"),
    ("/api/v1/flows/api/runs/runs", {"inputs": [1]}, 422, "inputs"),
    ("/api/v1/flows/api/runs/runs", {"input": {}}, 422, "input"),
    ("/api/v1/flows/api/nothing/runs", {}, 404, None),
])
def test_bad_run_requests_are_refused_and_start_nothing(client, operator, path, body, status, where) -> None:
    response = client.post(path, json=body, headers=operator)
    assert response.status_code == status, response.json
    if where:
        assert response.json["errors"][0]["path"] == where


def test_a_viewer_cannot_start_runs(client, engine) -> None:
    viewer = {"Authorization": f"Bearer {create_token(engine, 'runs-viewer', Role.VIEWER)}"}
    assert client.post("/api/v1/flows/api/runs/runs", json={}, headers=viewer).status_code == 403


def test_runs_are_listed_newest_first_filtered_and_paged_stably(client, operator) -> None:
    ids = [client.post("/api/v1/flows/api/runs/runs?wait=30", json={"inputs": {"n": i}}, headers=operator).json["id"]
           for i in range(3)]
    first = client.get("/api/v1/runs?flow=api/runs&status=succeeded&limit=2", headers=operator).json
    assert [r["id"] for r in first["items"]] == ids[::-1][:2]
    client.post("/api/v1/flows/api/runs/runs?wait=30", json={}, headers=operator)  # a newer run arrives
    second = client.get(f"/api/v1/runs?flow=api/runs&status=succeeded&limit=2&cursor={first['next_cursor']}",
                        headers=operator).json
    assert second["items"][0]["id"] == ids[0]
    assert client.get("/api/v1/runs?status=done", headers=operator).status_code == 422
    assert client.get("/api/v1/runs?since=yesterday", headers=operator).json["errors"][0]["path"] == "since"


def test_step_logs_and_the_audit_trail(client, operator) -> None:
    run = client.post("/api/v1/flows/api/gated/runs", headers=operator).json
    until_status(client, run["links"]["self"], operator, "suspended")
    client.post(f"/api/v1/runs/{run['id']}/steps/gate/reject", json={"reason": "not now"}, headers=operator)
    until_status(client, run["links"]["self"], operator, "failed")
    events = client.get(f"/api/v1/audit?target=run:{run['id']}", headers=operator).json["items"]
    assert [e["action"] for e in events] == [
        "run.created", "run.started", "step.started", "step.waiting", "run.suspended", "step.failed",
        "step.rejected", "run.resumed", "run.failed"]
    assert events[0]["actor"] == "token:runs-op"
    assert events[5]["details"] == {"path": "gate", "attempt": 1, "deliveries": 1,
                                    "error": "rejected by token:runs-op: not now"}
    assert events[5]["actor"] == "token:runs-op"  # who decided it, not the worker on the row
    assert events[6]["details"]["reason"] == "rejected by token:runs-op: not now"
    done = client.post("/api/v1/flows/api/runs/runs?wait=30", json={}, headers=operator).json
    logs = client.get(f"/api/v1/runs/{done['id']}/steps/double/logs", headers=operator)
    assert logs.status_code == 200 and logs.json["attempts"][0]["status"] == "succeeded"
    assert client.get(f"/api/v1/runs/{done['id']}/steps/nope/logs", headers=operator).status_code == 404


def test_cancel_stops_a_running_step_and_nothing_after_it_runs(client, operator, engine) -> None:
    import subprocess

    developer = {"Authorization": f"Bearer {create_token(engine, 'cancel-dev', Role.DEVELOPER)}",
                 "Content-Type": "application/yaml"}
    text = ("id: api/long\nsteps:\n  - id: forever\n    python: \"import subprocess\\ndef main():\\n"
            "    subprocess.run(['sleep', '3597'])\"\n  - id: after\n    bash: echo never\n")
    assert client.put("/api/v1/flows/api/long", data=text, headers=developer).status_code in (200, 201)
    run = client.post("/api/v1/flows/api/long/runs", headers=operator).json
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-f", "sleep 3597"], capture_output=True).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled = client.post(f"/api/v1/runs/{run['id']}/cancel", headers=operator)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert [(s["path"], s["status"], s["error"]) for s in cancelled.json["steps"]] == [
        ("forever", "failed", "run cancelled")]
    while subprocess.run(["pgrep", "-f", "sleep 3597"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the step's process is still running"
        time.sleep(0.1)
    time.sleep(1)
    final = client.get(run["links"]["self"], headers=operator).json
    assert final["status"] == "cancelled" and [s["path"] for s in final["steps"]] == ["forever"]
    assert client.post(f"/api/v1/runs/{run['id']}/cancel", headers=operator).status_code == 409


def test_cancel_ends_a_run_waiting_for_approval(client, operator) -> None:
    run = client.post("/api/v1/flows/api/gated/runs", headers=operator).json
    until_status(client, run["links"]["self"], operator, "suspended")
    cancelled = client.post(f"/api/v1/runs/{run['id']}/cancel", headers=operator).json
    assert cancelled["status"] == "cancelled"
    assert cancelled["steps"][0]["status"] == "failed" and cancelled["steps"][0]["error"] == "run cancelled"
    assert client.post(f"/api/v1/runs/{run['id']}/steps/gate/approve", headers=operator).status_code == 404


def test_the_same_idempotency_key_returns_the_same_run(client, operator, engine) -> None:
    from orchestrator.store import views

    headers = {**operator, "Idempotency-Key": "invoice-2026-11-24"}
    first = client.post("/api/v1/flows/api/runs/runs?wait=30", json={"inputs": {"n": 5}}, headers=headers)
    second = client.post("/api/v1/flows/api/runs/runs?wait=30", json={"inputs": {"n": 5}}, headers=headers)
    assert first.json["id"] == second.json["id"] and second.json["result"] == 10
    assert len([r for r in views.list_runs(engine, flow_id="api/runs", limit=200)
                if r.id == first.json["id"]]) == 1
    other = client.post("/api/v1/flows/api/runs/runs", json={}, headers={**operator, "Idempotency-Key": "other"})
    assert other.json["id"] != first.json["id"]


def test_restart_a_failed_run_from_a_step_reusing_earlier_results(client, operator, engine) -> None:
    developer = {"Authorization": f"Bearer {create_token(engine, 'restart-dev', Role.DEVELOPER)}",
                 "Content-Type": "application/yaml"}
    text = """id: api/restart
steps:
  - id: expensive
    python: |
      import random
      def main() -> float:
          return random.random()
  - id: fragile
    python: |
      def main(x: float, ok: str) -> float:
          if ok != "yes":
              raise RuntimeError("not yet")
          return x
    with: {x: "${{ steps.expensive.result }}", ok: "${{ vars.restart_ok }}"}
"""
    from orchestrator.store.variables import set_variable

    set_variable(engine, "restart_ok", "no", secret=False, keys=(), actor="test")
    client.put("/api/v1/flows/api/restart", data=text, headers=developer)
    failed = client.post("/api/v1/flows/api/restart/runs?wait=30", json={}, headers=operator).json
    assert failed["status"] == "failed"
    first_value = failed["steps"][0]["result"]
    set_variable(engine, "restart_ok", "yes", secret=False, keys=(), actor="test")
    try:
        bad = client.post(f"/api/v1/runs/{failed['id']}/restart", json={"from": "nope"}, headers=operator)
        assert bad.status_code == 422 and "restart from one of: expensive, fragile" in bad.json["errors"][0]["message"]
        restarted = client.post(f"/api/v1/runs/{failed['id']}/restart", json={"from": "fragile"}, headers=operator)
        assert restarted.status_code == 202
        run = until_status(client, restarted.json["links"]["self"], operator, "succeeded")
        assert run["result"] == first_value  # the earlier result, not a new random number
        assert run["restarted_from"] == failed["id"]
        assert [(s["path"], s["reused_from"]) for s in run["steps"]] == [("expensive", failed["id"]),
                                                                          ("fragile", None)]
        done = client.post(f"/api/v1/runs/{run['id']}/restart", json={"from": "fragile"}, headers=operator)
        assert done.status_code == 409
    finally:
        set_variable(engine, "restart_ok", "no", secret=False, keys=(), actor="test")


def test_a_runs_timeline_is_an_svg_gantt_chart_of_its_attempts(client, operator, engine, tmp_path) -> None:
    import xml.etree.ElementTree as ET

    from orchestrator.cli.main import main

    run = client.post("/api/v1/flows/api/runs/runs?wait=30", json={"inputs": {"n": 2}}, headers=operator).json
    svg = client.get(f"/api/v1/runs/{run['id']}/timeline.svg", headers=operator)
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
    root = ET.fromstring(svg.data)  # well-formed XML
    tooltips = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("double: waited ") for t in tooltips)
    assert any(t.startswith("double: succeeded, ran ") for t in tooltips)
    out = tmp_path / "run.svg"
    assert main(["runs", "timeline", run["id"], "-o", str(out)]) == 0
    assert out.read_text().startswith("<svg") and "double" in out.read_text()


def test_prometheus_metrics_count_runs_and_time_steps(client, operator, engine) -> None:
    """Kept counters and cumulative histograms, read with prometheus_client's own parser; a
    scrape folds what ended since the last one (LAG short of now: the clock is ours here)."""
    import datetime as dt

    from prometheus_client.parser import text_string_to_metric_families

    from orchestrator.observe.metrics import exposition

    def scrape(at: dt.datetime) -> dict[tuple[str, tuple], float]:
        text = exposition(engine, at, lag=dt.timedelta(0)).decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    assert client.get("/metrics").status_code == 401
    served = client.get("/metrics", headers=operator)
    assert served.status_code == 200 and served.mimetype == "text/plain"
    before = scrape(dt.datetime.now(dt.UTC))
    client.post("/api/v1/flows/api/runs/runs?wait=30", json={"inputs": {"n": 1}}, headers=operator)
    later = dt.datetime.now(dt.UTC)
    after = scrape(later)
    flow = ("flow", "api/runs")
    started = ("millrace_runs_started_total", (flow,))
    finished = ("millrace_runs_finished_total", (flow, ("status", "succeeded")))
    assert after[started] == before.get(started, 0) + 1 and after[finished] == before.get(finished, 0) + 1
    steps = (flow, ("kind", "python"), ("status", "succeeded"))
    count = after[("millrace_step_duration_seconds_count", steps)]
    assert count >= 1 and after[("millrace_step_duration_seconds_bucket", (*steps[:2], ("le", "+Inf"),
                                                                         steps[2]))] == count
    assert after[("millrace_step_duration_seconds_sum", steps)] > 0
    assert after[("millrace_runs_active", (("status", "queued"),))] >= 0  # a 0 sample is there
    # six minutes on (a clock of ours; folds never pass the real time): nothing was reset
    six_later = scrape(later + dt.timedelta(minutes=6))
    for key, value in after.items():
        if key[0].endswith(("_total", "_count", "_sum", "_bucket")):
            assert six_later[key] >= value, key
