"""What the event trigger tests share: a `millrace listener` process, a flow saved with a
trigger, and waiting on what the records say of its fires and runs."""
from __future__ import annotations

import os
import subprocess
import time
import uuid

from tests.conftest import LOGS, MILLRACE, ROOT, ProcessGroup

FINISHED = ("succeeded", "failed", "cancelled")


class ListenerProcess(ProcessGroup):
    """A real `millrace listener` in its own process group, on the session's database; killed,
    whatever it received and had not acknowledged is redelivered."""

    stop_timeout = 30.0

    def __init__(self, env: dict[str, str] | None = None):
        self.log_path = LOGS / f"listener-{uuid.uuid4().hex[:6]}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*MILLRACE, "listener", "--loglevel", "INFO"], cwd=ROOT,
                                     env={**os.environ, "MILLRACE_LISTENER_POLL_S": "0.5", **(env or {})},
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]



def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:8]}"


def save(engine, text: str) -> None:
    from orchestrator.definitions.parser import parse_flow
    from orchestrator.services.saving import save_flow

    save_flow(engine, parse_flow(text), text, actor="test")


def trigger_of(engine, flow_id: str, trigger_id: str):
    from orchestrator.store import event_triggers

    return event_triggers.get(engine, event_triggers.event_trigger_id(flow_id, trigger_id))


def wait_state(engine, flow_id: str, trigger_id: str, state: str, listener: ListenerProcess | None = None,
               timeout: float = 60, since=None):
    """Wait until the listener reports the trigger ``state`` (after ``since``, if given)."""
    deadline = time.monotonic() + timeout
    while True:
        row = trigger_of(engine, flow_id, trigger_id)
        if row is not None and row.state == state and (since is None or (row.state_at and row.state_at > since)):
            return row
        assert time.monotonic() < deadline, (row, listener.log() if listener else "")
        time.sleep(0.2)


def fires(engine, flow_id: str, trigger_id: str) -> list[dict]:
    from orchestrator.store import event_triggers

    return event_triggers.fires_of(engine, event_triggers.event_trigger_id(flow_id, trigger_id), limit=100_000)


def wait_fires(engine, flow_id: str, trigger_id: str, count: int, listener: ListenerProcess | None = None,
               timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(found := fires(engine, flow_id, trigger_id)) < count:
        assert time.monotonic() < deadline, (len(found), listener.log() if listener else "")
        time.sleep(0.2)
    return found


def finished_runs(engine, flow_id: str, count: int, timeout: float = 120) -> list:
    """The flow's runs, once ``count`` of them have ended, with their steps."""
    from sqlalchemy import select

    from orchestrator.store import views
    from orchestrator.store.tables import runs

    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            rows = conn.execute(select(runs.c.id, runs.c.status).where(runs.c.flow_id == flow_id)).all()
        if len(rows) >= count and all(r.status in FINISHED for r in rows):
            return [views.get_run(engine, r.id) for r in rows]
        assert time.monotonic() < deadline, f"{len(rows)} runs, {sum(r.status in FINISHED for r in rows)} ended"
        time.sleep(0.3)


def doubling_flow(flow_id: str, trigger: str, inputs: str = "") -> str:
    """A flow whose run doubles its input `n`, started by ``trigger`` (a YAML mapping's lines)."""
    return f"""
id: {flow_id}
inputs:
  n: {{type: integer}}
triggers:
  - id: events
{trigger}
{inputs}
steps:
  - id: double
    python: |
      def main(n):
          return n * 2
    with: {{n: "${{{{ inputs.n }}}}"}}
"""
