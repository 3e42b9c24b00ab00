"""A worker killed mid-run loses nothing: the run completes, each step recorded once."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from orchestrator.cli.wiring import publisher_for, send
from orchestrator.definitions.parser import parse_flow
from orchestrator.services.publisher import Publisher
from orchestrator.services.runs import stored_plans, submit, wait_for_run
from orchestrator.store import attempts, runs, views
from tests.conftest import QUEUE, Worker

pytestmark = pytest.mark.integration


def test_sigkill_of_the_worker_mid_flow_then_a_new_worker_completes_the_run(engine, worker):
    queue = f"{QUEUE}_crash"
    code = "import time\\ndef main(x: int) -> int:\\n    time.sleep(0.4)\\n    return x + 1"
    lines = []
    for i in range(10):
        previous = "0" if i == 0 else '"${{ steps.s' + str(i - 1) + '.result }}"'
        lines.append(f'  - id: s{i}\n    queue: {queue}\n    python: "{code}"\n    with: {{x: {previous}}}')
    steps = "\n".join(lines)
    text = f"id: test/crash\nsteps:\n{steps}\n"
    run = killed_while(engine, text, queue, "s3")
    assert run.status == "succeeded", run.error
    assert run.result == 10
    for i in range(10):
        rows = [s for s in run.steps if s.path == f"s{i}"]
        assert [(r.attempt, r.status) for r in rows] == [(1, "succeeded")], rows
    killed = next(s for s in run.steps if s.path == "s3")
    assert killed.deliveries >= 2  # it ran again after the kill


def killed_while(engine, text: str, queue: str, path: str, meanwhile=lambda: None) -> dict:
    """Run the flow on a worker of its own, SIGKILL that worker while ``path`` runs (after
    ``meanwhile``), let a new worker finish the run; returns the run."""
    doomed = Worker([queue], concurrency=1)
    run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
    _wait_running(engine, run_id, path)
    meanwhile()
    doomed.kill()
    replacement = Worker([queue], concurrency=1)
    try:
        assert wait_for_run(engine, run_id, 120).finished
    finally:
        replacement.stop()
    return views.get_run(engine, run_id)


def _wait_running(engine, run_id: str, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = views.get_run(engine, run_id)
        if any(s.path == path and s.status == "running" for s in run.steps):
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never started: {views.get_run(engine, run_id)}")


def test_a_batch_run_again_after_a_kill_keeps_what_its_earlier_steps_decided(engine, worker):
    """The first step's `if` reads a variable that changes while a later step of the same
    batch runs; the worker dies; the new worker replays the first step as it was recorded."""
    from orchestrator.store.variables import set_variable

    queue = f"{QUEUE}_replay"
    set_variable(engine, "replay_gate", True, secret=False, keys=(), actor="test")
    text = f"""id: test/replay
steps:
  - id: first
    if: "${{{{ vars.replay_gate }}}}"
    queue: {queue}
    python: "def main():\\n    return 'ran'"
  - id: slow
    queue: {queue}
    python: "import time\\ndef main(seen):\\n    time.sleep(1)\\n    return seen"
    with: {{seen: "${{{{ steps.first.result }}}}"}}
"""
    run = killed_while(engine, text, queue, "slow", meanwhile=lambda: set_variable(
        engine, "replay_gate", False, secret=False, keys=(), actor="test"))
    assert run.status == "succeeded", run.error
    assert run.result == "ran"
    assert [(s.path, s.status, s.deliveries) for s in run.steps] == [
        ("first", "succeeded", 1), ("slow", "succeeded", 2)]


def test_composite_steps_a_dead_delivery_decided_are_handed_on_when_redelivered(engine, worker):
    """An empty for_each and a switch with no case decide their own outcome; a delivery that
    recorded it and died before handing on leaves the message to run again, which goes on."""
    from orchestrator.execution.lifecycle import StepStatus

    text = """id: test/decided
steps:
  - id: none
    for_each: []
    do:
      - {id: inner, bash: echo never}
  - id: pick
    switch:
      - if: ${{ false }}
        do: [{id: never, bash: echo never}]
  - {id: after, python: "def main():\\n    return 'went on'"}
"""
    held = []
    run_id = submit(Publisher(engine, held.append, stored_plans(engine)), parse_flow(text), text, {}, trigger="test")
    assert runs.start_run(engine, run_id, "dead-worker")
    for path, kind, result in (("none", "for_each", []), ("pick", "switch", None)):
        attempt = attempts.open_attempt(engine, run_id=run_id, phase="main", path=path, step_id=path, kind=kind,
                                       item_index=None, attempt=1, worker="dead-worker", task_id=None,
                                       created_at=None)
        attempts.record_outcome(engine, attempt.id, StepStatus.SUCCEEDED, result)
    [canvas] = held
    send(canvas)  # the redelivery
    assert wait_for_run(engine, run_id, 60).finished
    run = views.get_run(engine, run_id)
    assert run.status == "succeeded" and run.result == "went on"
    assert [(s.path, s.status, s.worker) for s in run.steps][:2] == [
        ("none", "succeeded", "dead-worker"), ("pick", "succeeded", "dead-worker")]


def test_a_step_that_kills_its_worker_ends_failed_after_the_delivery_limit(engine) -> None:
    """A poison message: each delivery kills the pool process running it (here unsandboxed,
    where the step can reach it). After MILLRACE_MAX_DELIVERIES deliveries with no outcome
    the attempt fails, the run follows its failure policy, and the worker runs the next run."""
    queue = f"{QUEUE}_poison"
    kill = ("import os, signal\\ndef main():\\n    server = os.getppid()\\n"
            "    pool = int(open(f'/proc/{server}/stat').read().rsplit(')', 1)[1].split()[1])\\n"
            "    os.kill(pool, signal.SIGKILL)")
    text = (f"id: test/poison\nsteps:\n  - {{id: killer, queue: {queue}, python: \"{kill}\"}}\n"
            f"  - {{id: never, queue: {queue}, bash: echo never}}\n")
    ok = f"id: test/after_poison\nsteps:\n  - {{id: fine, queue: {queue}, bash: echo fine}}\n"
    poisoned = Worker([queue], concurrency=1, env={"MILLRACE_SANDBOX": "off", "MILLRACE_MAX_DELIVERIES": "2"})
    try:
        run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
        assert wait_for_run(engine, run_id, 120).value == "failed"
        run = views.get_run(engine, run_id)
        [killer] = [s for s in run.steps if s.path == "killer"]
        assert killer.deliveries == 3 and "the worker died 2 times running this step" in killer.error
        assert "never" not in [s.path for s in run.steps]
        after = submit(publisher_for(engine), parse_flow(ok), ok, {}, trigger="test")
        assert wait_for_run(engine, after, 60).value == "succeeded"
        # the killed pool processes' step-server folders are removed by the next server started
        orphans = [p for p in Path(tempfile.gettempdir()).glob("millrace-steps-*-*")
                   if not Path(f"/proc/{p.name.split('-')[2]}").exists()]
        assert orphans == []
    finally:
        poisoned.stop()


def test_a_for_each_lane_killed_midway_records_each_item_once_and_its_run_finishes(engine, worker):
    """A for_each over 8 items, all in parallel, on a worker of 2 processes runs in 2 lanes of
    4 items each. The worker dies while the lanes are half-way; a new worker takes the lanes
    again: the items recorded before the kill are handed on, not run again, the others run,
    and every item has one attempt and its result in item order."""
    queue = f"{QUEUE}_lanes"
    witness = Path(tempfile.mkdtemp()) / "ran"  # each item's code appends its item when it ends
    code = (f"import time\\ndef main(x: int) -> int:\\n    time.sleep(0.3)\\n"
            f"    with open('{witness}', 'a') as f:\\n        f.write(f'{{x}}\\\\n')\\n    return x * 10")
    text = f"""id: test/lanes
steps:
  - id: each
    queue: {queue}
    for_each: "${{{{ range(8) | list }}}}"
    parallel: true
    do:
      - id: work
        queue: {queue}
        python: "{code}"
        with: {{x: "${{{{ item }}}}"}}
  - id: total
    queue: {queue}
    python: "def main(values: list) -> int:\\n    return sum(values)"
    with: {{values: "${{{{ steps.each.result }}}}"}}
"""
    unconfined = {"MILLRACE_SANDBOX": "off"}  # so the items can write the witness file
    doomed = Worker([queue], concurrency=2, env=unconfined)
    run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
    _wait_running(engine, run_id, "each[3].work")  # lane 1's second item
    before = {s.path: s for s in views.get_run(engine, run_id).steps if s.status == "succeeded"}
    doomed.kill()
    replacement = Worker([queue], concurrency=2, env=unconfined)
    try:
        assert wait_for_run(engine, run_id, 120).finished
    finally:
        replacement.stop()
    run = views.get_run(engine, run_id)
    assert run.status == "succeeded", run.error
    assert run.result == 280
    [each] = [s for s in run.steps if s.path == "each"]
    assert each.result == [i * 10 for i in range(8)]
    items = [s for s in run.steps if s.path.endswith("].work")]
    assert sorted((s.path, s.attempt, s.status) for s in items) == [
        (f"each[{i}].work", 1, "succeeded") for i in range(8)]
    assert len({s.task_id for s in items}) == 2  # two lanes, as many as the worker runs at once
    ran = witness.read_text().split()
    assert set(ran) == {str(i) for i in range(8)}
    assert "each[1].work" in before  # its lane ran it before the item the kill found running
    for path, recorded in before.items():
        if path.endswith("].work"):  # recorded before the kill: handed on, never run again
            assert ran.count(path[5:-6]) == 1, (path, ran)
            assert next(s for s in items if s.path == path).finished_at == recorded.finished_at
    [killed] = [s for s in items if s.path == "each[3].work"]
    assert killed.deliveries >= 2  # its lane was delivered again


def test_a_for_each_takes_as_many_lanes_as_all_the_workers_of_its_queue_run_at_once(engine, worker):
    """Two workers of one process each on a queue: 6 items all in parallel are 2 lanes, run on
    both workers at once, not 6 tasks and not one worker's single lane."""
    queue = f"{QUEUE}_two_workers"
    code = "import time\\ndef main(x: int) -> int:\\n    time.sleep(0.2)\\n    return x"
    text = f"""id: test/two_workers
steps:
  - id: each
    queue: {queue}
    for_each: "${{{{ range(6) | list }}}}"
    parallel: true
    do:
      - {{id: work, queue: {queue}, python: "{code}", with: {{x: "${{{{ item }}}}"}}}}
"""
    workers = [Worker([queue], concurrency=1), Worker([queue], concurrency=1)]
    try:
        run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
        assert wait_for_run(engine, run_id, 120).finished
    finally:
        for w in workers:
            w.stop()
    run = views.get_run(engine, run_id)
    assert run.status == "succeeded", run.error
    assert run.result == list(range(6))
    items = [s for s in run.steps if s.path.endswith("].work")]
    assert len(items) == 6
    assert len({s.task_id for s in items}) == 2
    assert len({s.worker for s in items}) == 2  # a lane on each worker
