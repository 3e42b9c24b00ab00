"""The composition root: the one module that wires core, tasks, api and config together.

Core never imports the Celery app; the functions here hand it ``send`` and ``revoke``,
which do. Celery and Flask are imported inside the functions that need them, so the
command line starts fast.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from config.settings import Settings, load_settings
from orchestrator.definitions.flow import Flow
from orchestrator.errors import FlowError
from orchestrator.execution.plan import build_plan
from orchestrator.store import database as db


def send(signature: Any) -> None:
    """Publish a signature with the Celery app (imported here, at the composition root)."""
    import tasks  # noqa: F401 - makes the app the one signatures are sent with

    signature.apply_async()


def revoke(task_ids: list[str]) -> None:
    """Kill the processes running these tasks (their messages are then dropped, not redone)."""
    from tasks.app import revoke as revoke_tasks

    revoke_tasks(task_ids)


def actor() -> str:
    """Who the audit trail says acted: the user at this terminal."""
    return os.environ.get("USER") or "cli"


def engine_for(settings: Settings) -> Engine:
    """The configured database, refused when its schema is behind this Millrace (local
    mode brings its SQLite file up to date instead)."""
    engine = db.make_engine(settings.database_url)
    if not db.is_current(engine):
        if not settings.local:
            raise FlowError("the database schema is missing or older than this Millrace: "
                            "run `millrace db upgrade`")
        db.upgrade(engine)
    return engine


def publisher_for(engine: Engine) -> Any:
    """The publisher of this process: sends through the tasks app, plans read from ``engine``."""
    from orchestrator.services.publisher import Publisher
    from orchestrator.services.runs import stored_plans

    return Publisher(engine, send, stored_plans(engine))


def api_app() -> Any:
    """The API app, wired to the configured database and broker (also ``api.wsgi:app``)."""
    from api import create_app

    settings = load_settings()
    return create_app(settings, engine_for(settings), send, revoke, workers=workers_now)


def workers_now() -> list[dict[str, Any]]:
    """The workers that answer Celery's inspect within a second: their pools, queues, tasks."""
    from tasks import app

    inspector = app.control.inspect(timeout=1.0)
    stats = inspector.stats() or {}
    queues = inspector.active_queues() or {}
    active = inspector.active() or {}
    return [{"name": name, "processes": (info.get("pool") or {}).get("max-concurrency"),
             "queues": sorted(q["name"] for q in queues.get(name, [])),
             "active": [{"id": t.get("id"), "task": t.get("name"), "label": t.get("argsrepr")}
                        for t in active.get(name, [])]} for name, info in sorted(stats.items())]


def queues_of(flow: Flow, settings: Settings) -> list[str]:
    """The queues a worker must consume for ``flow``'s steps: the default and each named one."""
    plan = build_plan(flow, 0)
    named = {node.step.queue for node in plan.nodes.values() if node.step.queue}
    return [settings.default_queue, *sorted(named)]


def consumers(settings: Settings) -> int:
    """How many workers consume the default queue now (RabbitMQ says; local mode's
    file-system broker cannot, so it counts as one)."""
    if settings.local or settings.broker_url.startswith("filesystem"):
        return 1
    from tasks import app

    with app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(settings.default_queue, passive=True).consumer_count
        except Exception:  # noqa: BLE001 - a queue never declared has no consumer
            return 0


def start_worker(settings: Settings, queues: list[str], concurrency: int = 2) -> subprocess.Popen:
    """A Celery worker for ``millrace run --local``, in its own process group, logging to
    ``worker.log`` under the home folder."""
    command = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--loglevel=WARNING",
               f"--queues={','.join(queues)}", f"--concurrency={concurrency}", "--without-heartbeat",
               "--without-gossip", "--without-mingle"]
    env = {**os.environ, "MILLRACE_HOME": str(settings.home)}
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / "worker.log", "ab") as log:
        return subprocess.Popen(command, start_new_session=True, env=env, stdout=log, stderr=log)


def stop_worker(worker: subprocess.Popen) -> None:
    """Stop a worker from ``start_worker`` (its pool too); killed if it will not stop."""
    try:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(worker.pid, signal.SIGKILL)


def UP_FILE(settings: Settings) -> Path:  # noqa: N802 - a place, named as one
    """Where a running `millrace up` says it runs (its pid, its workers' pids)."""
    return settings.home / "up.json"


def running_up(settings: Settings) -> bool:
    """Whether a `millrace up` with workers runs for this home (``run --local`` then uses them)."""
    import json

    try:
        found = json.loads(UP_FILE(settings).read_text())
        os.kill(found["pid"], 0)
        return bool(found.get("workers"))
    except (OSError, ValueError, KeyError, TypeError):
        return False
