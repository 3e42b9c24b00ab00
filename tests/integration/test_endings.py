"""How runs end: stop_if, finally steps after a success, a failure and a cancel, on a real worker."""
from __future__ import annotations

import time
import uuid

import pytest

from orchestrator.definitions.parser import parse_flow
from orchestrator.store.access import Role
from tests.conftest import QUEUE
from tests.integration.test_crash import killed_while

pytestmark = pytest.mark.integration

REPORT = '"def main(status: str, error) -> list:\\n    return [status, error]"'
REPORT_WITH = '{status: "${{ run.status }}", error: "${{ run.error }}"}'


def only(run, path: str):
    found = [s for s in run.steps if s.path == path]
    assert len(found) == 1, f"{path}: {found}"
    return found[0]


def paths(run) -> set[str]:
    return {s.path for s in run.steps}


def running(api, run_id: str, path: str) -> None:
    """Wait until the run's step ``path`` is running."""
    deadline = time.monotonic() + 60
    while not any(s["path"] == path and s["status"] == "running"
                  for s in api.get(f"/api/v1/runs/{run_id}").json["steps"]):
        assert time.monotonic() < deadline, f"{path} never started"
        time.sleep(0.05)


def test_stop_if_ends_the_run_succeeded_with_its_result_and_cancels_a_parallel_sibling(run_flow, api):
    began = time.monotonic()
    run = run_flow(f"""
id: test/stop_parallel
steps:
  - id: both
    parallel:
      - id: quick
        steps:
          - id: check
            python: "import time\\ndef main() -> dict:\\n    time.sleep(1)\\n    return {{'done': True}}"
            stop_if: "${{{{ result.done }}}}"
          - {{id: never, python: "def main() -> int:\\n    return 1"}}
      - id: slow
        steps:
          - {{id: sleeper, bash: "sleep 60"}}
  - {{id: after, python: "def main() -> int:\\n    return 2"}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    assert run.status == "succeeded", run.error
    assert run.result == {"done": True}
    assert run.stopped_at == "both.quick.check"
    assert time.monotonic() - began < 45  # the sleeper was killed, not waited for
    sleeper = only(run, "both.slow.sleeper")
    assert (sleeper.status, sleeper.error) == ("failed", "cancelled: the run stopped at both.quick.check")
    assert not paths(run) & {"both.quick.never", "after"}  # no later step started
    assert only(run, "finally.report").result == ["succeeded", None]
    shown = api.get(f"/api/v1/runs/{run.id}").json
    assert (shown["status"], shown["stopped_at"], shown["ending"]) == ("succeeded", "both.quick.check", None)
    console = api.client.application.test_client()
    assert console.post("/sign-in", data={"token": api.tokens[Role.VIEWER]}).status_code == 302
    assert "stopped by the stop_if of <code>both.quick.check</code>" in console.get(f"/runs/{run.id}").text


def test_stop_if_that_does_not_hold_lets_the_run_go_on(run_flow):
    run = run_flow("""
id: test/stop_not
steps:
  - {id: a, python: "def main() -> int:\\n    return 1", stop_if: "${{ result > 5 }}"}
  - {id: b, python: "def main() -> int:\\n    return 2"}
""")
    assert (run.status, run.result, run.stopped_at) == ("succeeded", 2, None)


def test_finally_after_a_success_sees_the_run_succeeded_and_keeps_its_result(run_flow):
    run = run_flow("""
id: test/finally_ok
steps:
  - {id: work, python: "def main() -> int:\\n    return 7"}
finally:
  - id: report
    python: "def main(status: str, error, seen: int) -> list:\\n    return [status, error, seen]"
    with: {status: "${{ run.status }}", error: "${{ run.error }}", seen: "${{ steps.work.result }}"}
""")
    assert run.status == "succeeded", run.error
    assert run.result == 7  # the main steps' result, not the finally step's
    report = only(run, "finally.report")
    assert (report.step_id, report.status, report.result) == ("report", "succeeded", ["succeeded", None, 7])


def test_finally_after_a_failure_runs_after_on_failure(run_flow):
    run = run_flow(f"""
id: test/finally_failed
steps:
  - {{id: boom, python: "def main():\\n    raise ValueError('no')"}}
on_failure:
  - {{id: alert, python: "import time\\ndef main() -> str:\\n    time.sleep(0.3)\\n    return 'alerted'"}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    assert run.status == "failed"
    assert run.error.startswith("step boom failed: ValueError: no")
    alert, report = only(run, "on_failure.alert"), only(run, "finally.report")
    assert alert.status == "succeeded"
    assert report.result == ["failed", run.error]
    assert alert.finished_at <= report.started_at


def test_a_failing_finally_step_makes_a_succeeded_run_failed(run_flow):
    run = run_flow("""
id: test/finally_fails
steps:
  - {id: work, python: "def main() -> int:\\n    return 7"}
finally:
  - {id: cleanup, python: "def main():\\n    raise RuntimeError('disk full')"}
  - {id: later, python: "def main() -> int:\\n    return 1"}
""")
    assert run.status == "failed"
    assert run.error.startswith("step finally.cleanup failed: RuntimeError: disk full")
    assert run.result is None
    assert only(run, "work").status == "succeeded"
    assert "finally.later" not in paths(run)


def test_a_cancel_stops_the_steps_then_runs_finally_and_the_run_ends_cancelled(api, engine):
    flow = api.save_flow(f"""
id: test/finally_cancel
steps:
  - {{id: wait, bash: "sleep 60"}}
  - {{id: never, python: "def main() -> int:\\n    return 1"}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    run_id = api.post(f"/api/v1/flows/{flow['id']}/runs", json={}).json["id"]
    running(api, run_id, "wait")
    answer = api.post(f"/api/v1/runs/{run_id}/cancel", json={})
    assert answer.status_code == 200
    assert answer.json["ending"] == "cancelled" or answer.json["status"] == "cancelled"
    run = api.finished_run(run_id)
    assert (run["status"], run["ending"]) == ("cancelled", None)
    steps = {s["path"]: s for s in run["steps"]}
    assert (steps["wait"]["status"], steps["wait"]["error"]) == ("failed", "run cancelled")
    assert "never" not in steps
    assert steps["finally.report"]["result"] == ["cancelled", None]
    events = api.get(f"/api/v1/audit?target=run:{run_id}").json["items"]
    [cancelling] = [e for e in events if e["action"] == "run.finally"]
    assert cancelling["actor"] == "token:test-operator" and cancelling["details"]["ending"] == "cancelled"
    assert "run.cancelled" in [e["action"] for e in events]


def test_a_cancel_while_on_failure_steps_run_kills_them_then_runs_finally(api):
    flow = api.save_flow(f"""
id: test/finally_cancel_on_failure
steps:
  - {{id: boom, python: "def main():\\n    raise ValueError('boom')"}}
on_failure:
  - {{id: slow_alert, bash: "sleep 60"}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    run_id = api.post(f"/api/v1/flows/{flow['id']}/runs", json={}).json["id"]
    running(api, run_id, "on_failure.slow_alert")
    began = time.monotonic()
    assert api.post(f"/api/v1/runs/{run_id}/cancel", json={}).status_code == 200
    run = api.finished_run(run_id)
    assert time.monotonic() - began < 30  # the sleeping on_failure step was killed, not waited for
    steps = {s["path"]: s for s in run["steps"]}
    assert run["status"] == "cancelled"
    assert (steps["on_failure.slow_alert"]["status"], steps["on_failure.slow_alert"]["error"]) == (
        "failed", "run cancelled")
    status, error = steps["finally.report"]["result"]
    assert status == "cancelled" and "boom" in error


def test_a_worker_killed_during_a_finally_step_still_records_it_once(engine, worker):
    queue = f"{QUEUE}_endings"
    slow = '"import time\\ndef main() -> str:\\n    time.sleep(1.5)\\n    return \'cleaned\'"'
    text = f"""
id: test/finally_crash
steps:
  - {{id: work, queue: {queue}, python: "def main() -> int:\\n    return 7"}}
finally:
  - {{id: cleanup, queue: {queue}, python: {slow}}}
"""
    run = killed_while(engine, text, queue, "finally.cleanup")
    assert (run.status, run.result) == ("succeeded", 7), run.error
    [cleanup] = [s for s in run.steps if s.step_id == "cleanup"]
    assert (cleanup.attempt, cleanup.status, cleanup.result) == (1, "succeeded", "cleaned")
    assert cleanup.deliveries >= 2  # it ran again on the new worker


def test_finally_steps_a_dead_worker_owed_are_sent_by_the_sweeper(engine, worker):
    from orchestrator.execution.lifecycle import Phase
    from orchestrator.services.runs import wait_for_run
    from orchestrator.services.saving import save_flow
    from orchestrator.store import admission, outbox, runs, views
    from orchestrator.store.admission import NewRun
    from orchestrator.store.outbox import OwedKind
    from tasks.app import settings
    from tasks.runtime import Runtime
    from tasks.sweeper import sweep

    text = f"""id: test/finally_owed
steps:
  - {{id: work, python: "def main() -> int:\\n    return 7"}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
"""
    flow = parse_flow(text)
    version = save_flow(engine, flow, text)
    run_id = str(uuid.uuid4())
    admission.create_run(engine, NewRun(run_id, flow.id, version, {}, trigger="test"))
    assert runs.start_run(engine, run_id, "dead-worker")
    # the worker recorded the main steps' end with the finally steps owed, then died before sending them
    ending = runs.finish_run(engine, run_id, Phase.MAIN, 7, "dead-worker", has_finally=True)
    assert ending is not None and ending.status.value == "running" and ending.owed.kind is OwedKind.FINALLY
    assert views.get_run(engine, run_id).ending.value == "succeeded"
    time.sleep(1)
    sweep(Runtime(settings), unsent_after=0.5)
    assert wait_for_run(engine, run_id, 60).value == "succeeded"
    run = views.get_run(engine, run_id)
    assert (run.result, run.ending) == (7, None)
    assert outbox.owed_for(engine, OwedKind.FINALLY, run_id) is None
    assert [(s.path, s.status, s.result) for s in run.steps] == [("finally.report", "succeeded", ["succeeded", None])]


def test_stop_if_in_a_for_each_item_ends_the_run_and_no_later_item_starts(run_flow):
    run = run_flow("""
id: test/stop_each
steps:
  - id: each
    for_each: [1, 2, 3, 4]
    parallel: 1
    do:
      - id: check
        python: "def main(n: int) -> int:\\n    return n * 10"
        with: {n: "${{ item }}"}
        stop_if: "${{ result == 20 }}"
  - {id: after, python: "def main() -> int:\\n    return 0"}
""")
    assert (run.status, run.result, run.stopped_at) == ("succeeded", 20, "each[1].check")
    assert [s.path for s in run.steps if s.step_id == "check"] == ["each[0].check", "each[1].check"]
    each = only(run, "each")
    assert (each.status, each.error) == ("failed", "cancelled: the run stopped at each[1].check")
    assert "after" not in paths(run)


def test_a_stop_if_that_cannot_be_evaluated_fails_the_step(run_flow):
    run = run_flow("""
id: test/stop_bad
steps:
  - {id: a, python: "def main() -> int:\\n    return 0", stop_if: "${{ 1 // result }}"}
""")
    assert run.status == "failed" and run.stopped_at is None
    assert only(run, "a").error.startswith("stop_if: ")


def test_a_cancel_while_the_finally_steps_run_ends_the_run_at_once(api):
    flow = api.save_flow("""
id: test/finally_cancel_again
steps:
  - {id: work, python: "def main() -> int:\\n    return 7"}
finally:
  - {id: linger, bash: "sleep 60"}
""")
    run_id = api.post(f"/api/v1/flows/{flow['id']}/runs", json={}).json["id"]
    running(api, run_id, "finally.linger")
    assert api.get(f"/api/v1/runs/{run_id}").json["ending"] == "succeeded"
    answer = api.post(f"/api/v1/runs/{run_id}/cancel", json={}).json
    assert (answer["status"], answer["ending"]) == ("cancelled", None)
    steps = {s["path"]: s for s in answer["steps"]}
    assert (steps["finally.linger"]["status"], steps["finally.linger"]["error"]) == ("failed", "run cancelled")


def test_a_parent_run_goes_on_once_its_subflow_run_s_finally_steps_ended(run_flow, engine):
    from orchestrator.services.saving import save_flow
    from orchestrator.store import views

    child = """
id: test/finally_child
steps:
  - {id: work, python: "def main() -> int:\\n    return 41", stop_if: "${{ result == 41 }}"}
  - {id: never, python: "def main() -> int:\\n    return 0"}
finally:
  - {id: tidy, python: "import time\\ndef main() -> str:\\n    time.sleep(0.5)\\n    return 'tidy'"}
"""
    save_flow(engine, parse_flow(child), child)
    run = run_flow("""
id: test/finally_parent
steps:
  - {id: sub, flow: test/finally_child}
  - id: after
    python: "def main(x: int) -> int:\\n    return x + 1"
    with: {x: "${{ steps.sub.result }}"}
""")
    assert (run.status, run.result) == ("succeeded", 42), run.error
    sub = only(run, "sub")
    [child_run] = [views.get_run(engine, i) for i in views.subflow_runs(engine, run.id).values()]
    assert (child_run.status, child_run.stopped_at) == ("succeeded", "work")
    assert only(child_run, "finally.tidy").finished_at <= sub.finished_at
