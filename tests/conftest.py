"""Fixtures: a fresh Postgres database and RabbitMQ queue per test session, real workers.

Integration tests need PostgreSQL on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672
(override with MILLRACE_TEST_PG / MILLRACE_TEST_AMQP).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("MILLRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
AMQP = os.environ.get("MILLRACE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
SESSION = f"t{os.getpid()}_{uuid.uuid4().hex[:6]}"
DB_NAME = f"millrace_{SESSION}"
QUEUE = f"millrace_{SESSION}"

# Set before anything imports tasks.app, which reads the environment once.
os.environ["MILLRACE_DATABASE_URL"] = f"postgresql+psycopg://{PG.split('://', 1)[1]}/{DB_NAME}"
os.environ["MILLRACE_BROKER_URL"] = AMQP
os.environ["MILLRACE_DEFAULT_QUEUE"] = QUEUE
os.environ.setdefault("MILLRACE_HOME", str(ROOT / ".millrace" / "test"))
# A fixed key for the session: the test process and its workers encrypt and decrypt alike.
os.environ["MILLRACE_SECRET_KEY"] = "zT5cQ2H3uJ8GZbqL9cW1mA4vN7xY0kE6rP2sD5fG8hI="


@pytest.fixture(scope="session")
def database_url() -> str:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    from orchestrator.store import database as db

    engine = db.make_engine(os.environ["MILLRACE_DATABASE_URL"])
    db.upgrade(engine)
    engine.dispose()
    yield os.environ["MILLRACE_DATABASE_URL"]
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(database_url: str):
    from orchestrator.store.database import make_engine

    engine = make_engine(database_url)
    yield engine
    engine.dispose()


class Worker:
    """A real `celery -A tasks worker` process (and its pool) in its own process group."""

    def __init__(self, queues: list[str], concurrency: int = 2, log: Path | None = None,
                 env: dict[str, str] | None = None):
        self.log_path = log or ROOT / ".millrace" / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--loglevel=INFO",
             f"--queues={','.join(queues)}", f"--concurrency={concurrency}",
             "--without-gossip", "--without-mingle", "--hostname", f"w{uuid.uuid4().hex[:6]}@%h"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            if "ready." in self.log_path.read_text():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker: main process, pool and fork servers, as a crash would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture(scope="session")
def worker(database_url: str):
    w = Worker([QUEUE, f"{QUEUE}_special"], concurrency=2)
    yield w
    w.stop()


@pytest.fixture
def run_flow(engine, worker):
    """Submit a flow text with inputs, wait for it, return the run with its steps."""
    from orchestrator.cli.wiring import publisher_for
    from orchestrator.definitions.parser import parse_flow
    from orchestrator.services.runs import submit, wait_for_run
    from orchestrator.store import views

    def _run(text: str, inputs: dict | None = None, timeout: float = 120) -> dict:
        text = text.replace("QUEUE_SPECIAL", f"{QUEUE}_special")
        run_id = submit(publisher_for(engine), parse_flow(text), text, inputs or {}, trigger="test")
        status = wait_for_run(engine, run_id, timeout)
        assert status.finished, f"run {run_id} still {status} after {timeout}s"
        return views.get_run(engine, run_id)

    return _run


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """A `millrace` command serving HTTP on a free port, in its own process group, ready when
    ``health`` answers 200."""

    def __init__(self, name: str, argv: list[str], health: str, env: dict[str, str] | None = None,
                 port: int | None = None):
        import requests

        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / ".millrace" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *argv], cwd=ROOT,
                                     env={**os.environ, **(env or {})}, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.base + health, timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log_path.read_text()[-3000:]
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self._log.close()
