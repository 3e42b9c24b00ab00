"""The long trial, for each exactly-once event trigger: 100 messages published while a worker
is SIGKILLed once and the listener is SIGKILLed and started again once give exactly 100
runs, each with its message's inputs. Slow (a minute or more each): `-m slow` runs it."""
from __future__ import annotations

import json
import threading
import time

import pytest

from tests.conftest import Worker
from tests.integration import event_sources
from tests.integration.event_triggers import ListenerProcess, finished_runs, save, unique, wait_fires, wait_state

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MESSAGES = 100


@pytest.mark.parametrize("kind", event_sources.EXACTLY_ONCE)
def test_a_hundred_messages_through_a_killed_worker_and_a_restarted_listener_are_a_hundred_runs(
        engine, database_url, kind):
    source = event_sources.make(kind, engine)
    queue = unique("millrace_t_trial")
    flow_id = unique(f"trial_{kind}")
    save(engine, f"""
id: {flow_id}
inputs:
  n: {{type: integer}}
triggers:
  - id: events
{source.trigger_yaml}
    inputs: {{n: "${{{{ trigger.body.n }}}}"}}
steps:
  - id: double
    queue: {queue}
    python: |
      def main(n):
          return n * 2
    with: {{n: "${{{{ inputs.n }}}}"}}
""")
    worker = Worker([queue], concurrency=2)
    listener = ListenerProcess()
    began = time.monotonic()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        published = threading.Event()

        def publish_all() -> None:
            for n in range(MESSAGES):
                source.publish(json.dumps({"n": n}).encode(), f"m-{n}")
                time.sleep(0.05)
            published.set()

        publisher = threading.Thread(target=publish_all)
        publisher.start()
        wait_fires(engine, flow_id, "events", 30, listener, timeout=120)
        listener.kill()  # mid-stream: what it received and had not acknowledged comes again
        listener = ListenerProcess()
        wait_fires(engine, flow_id, "events", 60, listener, timeout=120)
        worker.kill()  # steps it was running run again on the next worker, recorded once
        worker = Worker([queue], concurrency=2)
        publisher.join()
        assert published.is_set()
        fires = wait_fires(engine, flow_id, "events", MESSAGES, listener, timeout=180)
        runs = finished_runs(engine, flow_id, MESSAGES, timeout=300)
    finally:
        listener.stop()
        worker.stop()
        source.close()
    elapsed = time.monotonic() - began
    print(f"{kind}: {len(fires)} fires, {len(runs)} runs in {elapsed:.0f} s")
    assert len(runs) == MESSAGES and len(fires) == MESSAGES
    assert all(f["status"] == "started" for f in fires)
    assert sorted(r.inputs["n"] for r in runs) == list(range(MESSAGES))
    assert all(r.status.value == "succeeded" and r.steps[0].result == 2 * r.inputs["n"] for r in runs)
