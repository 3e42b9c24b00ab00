"""Outages answer what will happen: with the database away every route that needs it says
503 with Retry-After (no 500, no traceback), and answers again once it is back. Each test
stops a private service of its own, never the machine's."""
from __future__ import annotations

import pytest

from orchestrator.store.access import Role, create_token

pytestmark = pytest.mark.integration


def test_with_the_database_down_every_route_answers_503_then_recovers(private_postgres, private_database):
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send
    from orchestrator.store.database import make_engine

    engine = make_engine(private_database)
    client = create_app(load_settings(), engine, send, revoke).test_client()
    token = {"Authorization": f"Bearer {create_token(engine, 'outage', Role.ADMIN)}"}
    flow = "id: outage/f\nsteps:\n  - {id: a, bash: echo}\n"
    yaml = {**token, "Content-Type": "application/yaml"}
    assert client.put("/api/v1/flows/outage/f", data=flow, headers=yaml).status_code == 201
    requests = [("GET", "/api/v1/flows", None, {}), ("GET", "/api/v1/runs?limit=5", None, {}),
                ("PUT", "/api/v1/flows/outage/g", flow.replace("outage/f", "outage/g"), yaml),
                ("POST", "/api/v1/flows/outage/f/runs", "{}", {"Content-Type": "application/json"}),
                ("GET", "/api/v1/audit", None, {}), ("GET", "/metrics", None, {})]
    from orchestrator.store.access import open_session

    console_session, _ = open_session(engine, create_token(engine, "outage-console", Role.VIEWER))
    client.set_cookie("millrace_session", console_session)
    private_postgres.stop()
    try:
        page = client.get("/")  # the console: a readable page that retries, not a JSON problem
        assert page.status_code == 503 and page.mimetype == "text/html", page.get_data(as_text=True)[:300]
        assert "The database is unreachable" in page.text and 'http-equiv="refresh" content="5"' in page.text
        for method, url, body, headers in requests:
            answer = client.open(url, method=method, data=body, headers={**token, **headers})
            assert answer.status_code == 503, (url, answer.status_code, answer.get_data(as_text=True)[:300])
            assert answer.mimetype == "application/problem+json" and answer.headers["Retry-After"] == "5"
            assert "Traceback" not in answer.get_data(as_text=True)
        assert client.get("/healthz").status_code == 200  # the process itself is alive
        assert client.get("/readyz").status_code == 503
    finally:
        private_postgres.start()
    # a pooled connection of before the outage fails once (503, its pool emptied), then it answers
    answers = [client.get("/api/v1/flows", headers=token).status_code for _ in range(3)]
    assert answers[-1] == 200 and set(answers) <= {200, 503}, answers
    assert client.get("/api/v1/flows/outage/g", headers=token).status_code == 404  # nothing stored meanwhile


def test_with_the_broker_down_a_run_is_accepted_at_once_and_runs_once_when_it_is_back(
        private_rabbit, database_url, engine) -> None:
    """POST .../runs while RabbitMQ is away answers 202 within 5 s (the run is recorded and its
    first message owed), never a 500 that a client would retry into a second run; when the
    broker is back the sweeper sends it, and it runs once."""
    import time

    import requests

    from orchestrator.store import views
    from tests.conftest import QUEUE, Served, Worker, free_port

    env = {"MILLRACE_BROKER_URL": private_rabbit.url}
    worker = Worker([QUEUE], concurrency=1, env=env)
    port = free_port()
    api = Served("api-outage", ["api", "--port", str(port), "--workers", "1"], "/healthz", env=env, port=port)
    try:
        token = {"Authorization": f"Bearer {create_token(engine, 'broker-outage', Role.OPERATOR)}"}
        developer = {"Authorization": f"Bearer {create_token(engine, 'broker-dev', Role.DEVELOPER)}",
                     "Content-Type": "application/yaml"}
        flow = "id: outage/broker\nsteps:\n  - {id: once, python: \"def main():\\n    return 'ran'\"}\n"
        assert requests.put(f"{api.base}/api/v1/flows/outage/broker", data=flow, headers=developer,
                            timeout=30).status_code == 201
        private_rabbit.stop()
        try:
            began = time.monotonic()
            answer = requests.post(f"{api.base}/api/v1/flows/outage/broker/runs", json={},
                                   headers={**token, "Idempotency-Key": "outage-1"}, timeout=30)
            took = time.monotonic() - began
            assert answer.status_code == 202 and took < 5, (answer.status_code, took, answer.text[:300])
            run_id = answer.json()["id"]
            again = requests.post(f"{api.base}/api/v1/flows/outage/broker/runs", json={},
                                  headers={**token, "Idempotency-Key": "outage-1"}, timeout=30)
            assert again.json()["id"] == run_id  # the client's retry is the same run
        finally:
            private_rabbit.start()
        deadline = time.monotonic() + 120
        while not (run := views.get_run(engine, run_id)).status.finished:
            assert time.monotonic() < deadline, run
            time.sleep(0.5)
        assert run.status == "succeeded" and run.result == "ran"
        assert [(s.path, s.attempt, s.deliveries) for s in run.steps] == [("once", 1, 1)]
    finally:
        api.stop()
        worker.stop()
