"""What the API tests share: an app on the test database and broker, a token per role."""
from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from orchestrator.store.access import Role, create_token
from tests.conftest import PG

FINISHED = ("succeeded", "failed", "cancelled")


class Api:
    """A test client of the real app that signs each request with a role's token."""

    def __init__(self, client, tokens: dict[Role, str]):
        self.client = client
        self.tokens = tokens

    def headers(self, role: Role, **more: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}", **more}

    def call(self, method: str, url: str, role: Role = Role.ADMIN, **kwargs):
        headers = {**self.headers(role), **kwargs.pop("headers", {})}
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def get(self, url: str, role: Role = Role.VIEWER, **kwargs):
        return self.call("GET", url, role, **kwargs)

    def post(self, url: str, role: Role = Role.OPERATOR, **kwargs):
        return self.call("POST", url, role, **kwargs)

    def put(self, url: str, role: Role = Role.DEVELOPER, **kwargs):
        return self.call("PUT", url, role, **kwargs)

    def delete(self, url: str, role: Role = Role.DEVELOPER, **kwargs):
        return self.call("DELETE", url, role, **kwargs)

    def finished_run(self, run_id: str, timeout: float = 60) -> dict:
        """Poll a run until it has ended; returns it."""
        deadline = time.monotonic() + timeout
        while (run := self.get(f"/api/v1/runs/{run_id}").json)["status"] not in FINISHED:
            assert time.monotonic() < deadline, run
            time.sleep(0.05)
        return run

    def approve_when_waiting(self, run_id: str, step: str, timeout: float = 60) -> None:
        """Wait until ``step`` of the run waits for approval, then approve it."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/api/v1/runs/{run_id}").json
            if any(s["path"] == step and s["status"] == "waiting" for s in run["steps"]):
                break
            assert time.monotonic() < deadline, run
            time.sleep(0.05)
        approved = self.post(f"/api/v1/runs/{run_id}/steps/{step}/approve", json={})
        assert approved.status_code == 200, approved.json

    def save_flow(self, text: str) -> dict:
        import yaml

        flow_id = yaml.safe_load(text)["id"]
        saved = self.put(f"/api/v1/flows/{flow_id}", data=text, headers={"Content-Type": "application/yaml"})
        assert saved.status_code in (200, 201), saved.json
        return saved.json


@pytest.fixture(scope="module")
def api(engine, worker) -> Api:
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    app = create_app(load_settings(), engine, send, revoke)
    tokens = {role: create_token(engine, f"test-{role.value}", role) for role in Role}
    return Api(app.test_client(), tokens)


@pytest.fixture
def amqp_queue():
    """A durable queue on the test broker, for an amqp event trigger to consume; deleted after."""
    import uuid

    import kombu

    from tests.conftest import AMQP

    name = f"millrace_evt_{uuid.uuid4().hex[:8]}"
    with kombu.Connection(AMQP) as conn, conn.channel() as channel:
        channel.queue_declare(name, durable=True, auto_delete=False)
    yield name
    with kombu.Connection(AMQP) as conn, conn.channel() as channel:
        channel.queue_delete(name)


@pytest.fixture
def chain_db():
    """A database of its own, at the newest migration: for tampering with its audit trail."""
    from orchestrator.store import database as db

    name = f"millrace_audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = db.make_engine(f"postgresql+psycopg://{PG.split('://', 1)[1]}/{name}")
    db.upgrade(engine)
    yield engine
    engine.dispose()
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
