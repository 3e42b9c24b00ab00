"""Fixtures: a fresh Postgres database and RabbitMQ queues per test session, real workers,
and private PostgreSQL clusters and RabbitMQ nodes for tests that take a service down.

Integration tests need PostgreSQL on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672
(override with MILLRACE_TEST_PG / MILLRACE_TEST_AMQP). They never stop or reconfigure
those: outage tests use ``private_postgres`` / ``private_rabbit`` (tests/services.py).
Names a session makes on the shared services begin with MILLRACE_TEST_DB_PREFIX and
MILLRACE_TEST_QUEUE_PREFIX (default ``millrace_t``), then the session's pid and a random
part, so that any number of checkouts run their suites on one machine at once.
MILLRACE_TEST_QUEUE_TYPE (classic or quorum) runs the session's workers on that queue type.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests import services

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("MILLRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
AMQP = os.environ.get("MILLRACE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
SESSION = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
DB_NAME = f"{os.environ.get('MILLRACE_TEST_DB_PREFIX', 'millrace_t')}{SESSION}"
# The session's own default queue, control and event exchanges: its workers never take
# another session's tasks, broadcast commands (revoke) or events (Flower).
QUEUE_PREFIX = f"{os.environ.get('MILLRACE_TEST_QUEUE_PREFIX', 'millrace_t')}{SESSION}."
# A session's worker, API and Flower logs; removed when the session passes.
LOGS = ROOT / ".millrace" / "test-logs" / SESSION

# Set before anything imports tasks.app, which reads the environment once.
os.environ["MILLRACE_DATABASE_URL"] = f"postgresql+psycopg://{PG.split('://', 1)[1]}/{DB_NAME}"
os.environ["MILLRACE_BROKER_URL"] = AMQP
os.environ["MILLRACE_QUEUE_PREFIX"] = QUEUE_PREFIX
os.environ["MILLRACE_DEFAULT_QUEUE"] = "millrace"
if os.environ.get("MILLRACE_TEST_QUEUE_TYPE"):
    os.environ["MILLRACE_QUEUE_TYPE"] = os.environ["MILLRACE_TEST_QUEUE_TYPE"]
os.environ.setdefault("MILLRACE_HOME", str(ROOT / ".millrace" / "test"))
# A fixed key for the session: the test process and its workers encrypt and decrypt alike.
os.environ["MILLRACE_SECRET_KEY"] = "zT5cQ2H3uJ8GZbqL9cW1mA4vN7xY0kE6rP2sD5fG8hI="


def _session_queue() -> str:
    from config.settings import load_settings

    return load_settings().default_queue  # the prefix as the product applies it


QUEUE = _session_queue()
# The queues the session used on the shared broker (each with an exchange of its name),
# deleted when it ends.
_SHARED_QUEUES: set[str] = set()


# --- Millrace, as the fixtures reach it ----------------------------------------------------
# Imported late and only here: moving a module means changing these lines, nothing else.

MILLRACE = [sys.executable, "-m", "orchestrator.cli"]  # the `millrace` command


def migrate(database_url: str) -> None:
    """Bring the database's schema up to date."""
    from orchestrator.store import database as db

    engine = db.make_engine(database_url)
    db.upgrade(engine)
    engine.dispose()


def make_engine(database_url: str):
    from orchestrator.store.database import make_engine

    return make_engine(database_url)


def get_run(engine, run_id: str):
    """A run with its step attempts, as the records keep it."""
    from orchestrator.store import views

    return views.get_run(engine, run_id)


# --- the shared services ------------------------------------------------------------------

@pytest.fixture(scope="session")
def database_url() -> str:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    _SHARED_QUEUES.update({QUEUE, f"{QUEUE}_special"})  # what runs on this database publish to
    migrate(os.environ["MILLRACE_DATABASE_URL"])
    yield os.environ["MILLRACE_DATABASE_URL"]
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(database_url: str):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


class ProcessGroup:
    """A process started in a group of its own (``proc``) logging to ``_log``: ended whole."""

    proc: subprocess.Popen
    _log: object
    stop_timeout = 20.0

    def kill(self) -> None:
        """SIGKILL the whole group (a worker's pool and fork servers too), as a crash would."""
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
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class Worker(ProcessGroup):
    """A real `celery -A tasks worker` process (and its pool) in its own process group.

    ``env`` adds to the test process's environment (e.g. another broker or database). Its
    log is under the session's LOGS unless ``log`` says where. ``on`` is what the command
    runs under (another host's namespace: tests/integration/hosts.py).
    """

    def __init__(self, queues: list[str], concurrency: int = 2, log: Path | None = None,
                 env: dict[str, str] | None = None, on: list[str] | None = None):
        self.env = {**os.environ, **(env or {})}
        if self.env["MILLRACE_BROKER_URL"] == AMQP:
            _SHARED_QUEUES.update(queues)
        self.log_path = log or LOGS / f"worker-{uuid.uuid4().hex[:6]}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*(on or []), sys.executable, "-m", "celery", "-A", "tasks", "worker", "--loglevel=INFO",
             f"--queues={','.join(queues)}", f"--concurrency={concurrency}",
             "--without-gossip", "--without-mingle", "--hostname", f"w{uuid.uuid4().hex[:6]}@%h"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env=self.env,
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

    def _run(text: str, inputs: dict | None = None, timeout: float = 120):
        text = text.replace("QUEUE_SPECIAL", f"{QUEUE}_special")
        run_id = submit(publisher_for(engine), parse_flow(text), text, inputs or {}, trigger="test",
                        home=Path(os.environ["MILLRACE_HOME"]))
        status = wait_for_run(engine, run_id, timeout)
        assert status.finished, f"run {run_id} still {status} after {timeout}s"
        return get_run(engine, run_id)

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
        self.log_path = LOGS / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*MILLRACE, *argv], cwd=ROOT,
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


# --- private services, for outage tests ---------------------------------------------------
# Per module: an outage test that leaves its service broken breaks no other module.

@pytest.fixture(scope="module")
def private_postgres():
    """A PostgreSQL cluster of the module's own (services.PrivatePostgres), dropped after it."""
    cluster = services.PrivatePostgres()
    print(f"private PostgreSQL {cluster.version} {cluster.name} on port {cluster.port}: "
          f"ready in {cluster.ready_in:.1f} s")
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def private_database(private_postgres) -> str:
    """The URL of a Millrace database, schema made, on the module's private cluster."""
    url = private_postgres.create_database("millrace")
    migrate(url)
    return url


@pytest.fixture(scope="module")
def private_rabbit():
    """A RabbitMQ node of the module's own (services.PrivateRabbit), removed after it."""
    node = services.PrivateRabbit()
    print(f"private RabbitMQ {node.node} on port {node.port}: ready in {node.ready_in:.1f} s")
    yield node
    node.remove()


# --- the session's beginning and end ------------------------------------------------------

def pytest_sessionstart(session: pytest.Session) -> None:
    # A session killed before its finalizers ran left its clusters and nodes running.
    for name in services.remove_stale():
        print(f"removed {name}, left by a test session that is gone")


@pytest.hookimpl(trylast=True)  # after the runner has torn the session's fixtures down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _delete_shared_names()
    passed = exitstatus == 0 and not session.testsfailed
    _tidy_logs(passed)
    left = services.left_by(os.getpid())
    if left:
        services.remove_left_by(os.getpid())
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "the session left private services running (removed now): " + "; ".join(left)
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"ERROR: {message}", red=True, bold=True)
        else:
            print(f"ERROR: {message}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _delete_shared_names() -> None:
    """Delete the queues and exchanges the session declared on the shared broker."""
    if not _SHARED_QUEUES:
        return  # no test of the session reached it
    import kombu

    exchanges = [*_SHARED_QUEUES, f"{QUEUE_PREFIX}celeryev", f"{QUEUE_PREFIX}celery.pidbox",
                 f"reply.{QUEUE_PREFIX}celery.pidbox"]
    try:
        with kombu.Connection(AMQP, connect_timeout=5) as conn:
            for name in _SHARED_QUEUES:
                with conn.channel() as channel:  # one each: a refusal closes its channel
                    channel.queue_delete(name)
            for name in exchanges:
                with conn.channel() as channel:
                    channel.exchange_delete(name)
    except Exception as exc:  # noqa: BLE001 - a broker gone by now must not hide the results
        print(f"could not delete the session's queues on {AMQP}: {exc}", file=sys.stderr)


def _tidy_logs(passed: bool) -> None:
    if not passed:
        if LOGS.exists():
            print(f"\nlogs of the failed session kept in {LOGS}", file=sys.stderr)
        return
    shutil.rmtree(LOGS, ignore_errors=True)
    for folder in (LOGS.parent, LOGS.parent.parent):
        try:
            folder.rmdir()  # only when empty: other sessions' logs, local mode's files stay
        except OSError:
            pass
