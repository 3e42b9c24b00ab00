"""Loops, break_if, fail_if and retry.if, run end to end on a real worker."""
from __future__ import annotations

import pytest

from tests.conftest import QUEUE
from tests.integration.test_crash import killed_while

pytestmark = pytest.mark.integration

INC = '"def main(n: int) -> int:\\n    return n + 1"'


def rows(run, step_id: str) -> list:
    return [s for s in run.steps if s.step_id == step_id]


def only(run, path: str):
    found = [s for s in run.steps if s.path == path]
    assert len(found) == 1, f"{path}: {found}"
    return found[0]


def test_a_loop_counts_to_five_recording_each_iteration_under_its_index(run_flow):
    run = run_flow(f"""
id: test/loop_count
steps:
  - id: count
    loop:
      do:
        - id: inc
          python: {INC}
          with: {{n: "${{{{ previous.inc.result if iteration else 0 }}}}"}}
        - id: seen
          python: "def main(i: int, n: int) -> list:\\n    return [i, n]"
          with: {{i: "${{{{ iteration }}}}", n: "${{{{ steps.inc.result }}}}"}}
      until: "${{{{ steps.inc.result >= 5 }}}}"
      max_iterations: 10
  - id: after
    python: "def main(x: list) -> int:\\n    return x[1] * 10"
    with: {{x: "${{{{ steps.count.result }}}}"}}
""")
    assert run.status == "succeeded", run.error
    assert run.result == 50
    incs = rows(run, "inc")
    assert [(s.path, s.item_index, s.status, s.result) for s in incs] == [
        (f"count[{i}].inc", i, "succeeded", i + 1) for i in range(5)]
    assert [s.result for s in rows(run, "seen")] == [[i, i + 1] for i in range(5)]
    loop = only(run, "count")
    assert (loop.kind, loop.status, loop.result, loop.item_index) == ("loop", "succeeded", [4, 5], None)


def test_a_loop_that_reaches_max_iterations_fails_saying_so(run_flow):
    run = run_flow(f"""
id: test/loop_max
steps:
  - id: spin
    loop:
      do:
        - {{id: inc, python: {INC}, with: {{n: "${{{{ iteration }}}}"}}}}
      until: "${{{{ steps.inc.result > 100 }}}}"
      max_iterations: 3
""")
    assert run.status == "failed"
    assert "loop stopped after 3 iterations: until never held" in run.error
    assert [s.path for s in rows(run, "inc")] == ["spin[0].inc", "spin[1].inc", "spin[2].inc"]
    assert only(run, "spin").status == "failed"


def test_a_loop_failure_continues_on_error_with_its_error_typed(run_flow):
    run = run_flow(f"""
id: test/loop_max_continue
steps:
  - id: spin
    continue_on_error: true
    loop:
      do:
        - {{id: inc, python: {INC}, with: {{n: 1}}}}
      while: "${{{{ true }}}}"
      max_iterations: 2
  - id: report
    python: "def main(e: dict) -> str:\\n    return e['type'] + ' / ' + e['message']"
    with: {{e: "${{{{ steps.spin.error }}}}"}}
""")
    assert run.status == "succeeded", run.error
    assert run.result == "Error / loop stopped after 2 iterations: while still held"


def test_a_while_loop_false_at_once_runs_no_iteration_and_one_true_runs_until_false(run_flow):
    run = run_flow(f"""
id: test/loop_while
inputs:
  n: {{type: integer}}
steps:
  - id: never
    loop:
      do:
        - {{id: body, python: {INC}, with: {{n: 0}}}}
      while: "${{{{ inputs.n > 100 }}}}"
      max_iterations: 5
  - id: thrice
    loop:
      do:
        - {{id: step, python: {INC}, with: {{n: "${{{{ iteration }}}}"}}}}
      while: "${{{{ iteration < inputs.n }}}}"
      max_iterations: 5
""", {"n": 3})
    assert run.status == "succeeded", run.error
    assert rows(run, "body") == []
    assert only(run, "never").result is None and only(run, "never").status == "succeeded"
    assert [s.path for s in rows(run, "step")] == ["thrice[0].step", "thrice[1].step", "thrice[2].step"]
    assert run.result == 3


def test_a_loop_waits_its_delay_between_iterations(run_flow):
    run = run_flow(f"""
id: test/loop_delay
steps:
  - id: slow
    loop:
      do:
        - {{id: tick, python: {INC}, with: {{n: "${{{{ iteration }}}}"}}}}
      until: "${{{{ iteration == 2 }}}}"
      max_iterations: 5
      delay: 1s
""")
    assert run.status == "succeeded", run.error
    ticks = rows(run, "tick")
    assert len(ticks) == 3 and run.result == 3
    for before, after in zip(ticks, ticks[1:], strict=False):
        assert (after.started_at - before.finished_at).total_seconds() >= 0.9


def test_break_if_in_a_sequential_for_each_starts_no_later_item(run_flow):
    run = run_flow("""
id: test/break_sequential
steps:
  - id: each
    for_each: [1, 2, 3, 4, 5, 6]
    parallel: false
    do:
      - id: look
        python: "def main(x: int) -> int:\\n    return x"
        with: {x: "${{ item }}"}
        break_if: "${{ result >= 3 }}"
      - id: tens
        python: "def main(x: int) -> int:\\n    return x * 10"
        with: {x: "${{ steps.look.result }}"}
  - id: after
    python: "def main(xs: list) -> list:\\n    return xs"
    with: {xs: "${{ steps.each.result }}"}
""")
    assert run.status == "succeeded", run.error
    assert run.result == [10, 20, 3]  # the breaking item's last result is the step that broke it
    assert [s.path for s in rows(run, "look")] == ["each[0].look", "each[1].look", "each[2].look"]
    assert [s.path for s in rows(run, "tens")] == ["each[0].tens", "each[1].tens"]
    loop = only(run, "each")
    assert loop.broke_at == "each[2].look" and loop.result == [10, 20, 3]


def test_break_if_in_a_parallel_for_each_starts_no_new_item_in_any_lane(run_flow):
    # Two lanes: lane 0 has items 0, 2, 4, 6 and lane 1 items 1, 3, 5, 7. Item 1 breaks
    # while item 0 still runs; lane 0 then starts nothing more, nor does lane 1.
    run = run_flow("""
id: test/break_parallel
steps:
  - id: each
    for_each: [0, 1, 2, 3, 4, 5, 6, 7]
    parallel: 2
    do:
      - id: work
        python: "import time\\ndef main(x: int) -> int:\\n    time.sleep(0.1 if x == 1 else 1.0)\\n    return x"
        with: {x: "${{ item }}"}
        break_if: "${{ result == 1 }}"
""")
    assert run.status == "succeeded", run.error
    assert sorted(s.path for s in rows(run, "work")) == ["each[0].work", "each[1].work"]
    assert run.result == [0, 1]
    assert only(run, "each").broke_at == "each[1].work"


def test_break_if_ends_a_loop_with_the_breaking_step_s_result(run_flow):
    run = run_flow(f"""
id: test/break_loop
steps:
  - id: count
    loop:
      do:
        - id: inc
          python: {INC}
          with: {{n: "${{{{ iteration }}}}"}}
          break_if: "${{{{ result >= 3 }}}}"
        - {{id: never_after_break, python: {INC}, with: {{n: 0}}}}
      until: false
      max_iterations: 10
""")
    assert run.status == "succeeded", run.error
    assert run.result == 3
    assert [s.path for s in rows(run, "inc")] == ["count[0].inc", "count[1].inc", "count[2].inc"]
    assert len(rows(run, "never_after_break")) == 2
    assert only(run, "count").broke_at == "count[2].inc"


def test_fail_if_fails_a_step_that_is_retried_then_continued(run_flow):
    run = run_flow("""
id: test/fail_if
steps:
  - id: query
    python: "def main() -> dict:\\n    return {'rows': 0}"
    fail_if: "${{ result.rows == 0 }}"
    retry: {attempts: 2, delay: 50ms}
    continue_on_error: true
  - id: fine
    python: "def main() -> dict:\\n    return {'rows': 4}"
    fail_if: "${{ result.rows == 0 }}"
  - id: report
    python: "def main(e: dict, n: int) -> list:\\n    return [e['type'], e['message'], n]"
    with: {e: "${{ steps.query.error }}", n: "${{ steps.fine.result.rows }}"}
""")
    assert run.status == "succeeded", run.error
    assert [(s.attempt, s.status) for s in rows(run, "query")] == [(1, "failed"), (2, "failed")]
    assert rows(run, "query")[0].error == "fail_if held: result.rows == 0"
    assert run.result == ["FailIf", "fail_if held: result.rows == 0", 4]


def test_fail_if_without_continue_fails_the_run(run_flow):
    run = run_flow("""
id: test/fail_if_run
steps:
  - {id: check, python: "def main() -> int:\\n    return 7", fail_if: "${{ result > 5 }}"}
  - {id: later, python: "def main() -> int:\\n    return 1"}
""")
    assert run.status == "failed"
    assert "fail_if held: result > 5" in run.error
    assert rows(run, "later") == []


def test_retry_if_retries_a_timeout_and_not_a_value_error(run_flow):
    run = run_flow("""
id: test/retry_if
steps:
  - id: slow_once
    python: |
      import os, time
      def main() -> str:
          if os.environ["MILLRACE_ATTEMPT"] == "1":
              time.sleep(30)
          return "in time"
    timeout: 1s
    retry: {attempts: 3, delay: 50ms, if: "${{ error.type == 'Timeout' }}"}
  - id: wrong
    python: "def main():\\n    raise ValueError('bad input')"
    retry: {attempts: 3, delay: 50ms, if: "${{ 'timed out' in error.message }}"}
    continue_on_error: true
  - id: report
    python: "def main(e: dict) -> str:\\n    return e['type']"
    with: {e: "${{ steps.wrong.error }}"}
""")
    assert run.status == "succeeded", run.error
    slow = rows(run, "slow_once")
    assert [(s.attempt, s.status) for s in slow] == [(1, "failed"), (2, "succeeded")]
    assert slow[0].error.startswith("timed out after 1s") and slow[0].error_type == "Timeout"
    wrong = rows(run, "wrong")
    assert [(s.attempt, s.status, s.error_type) for s in wrong] == [(1, "failed", "ValueError")]
    assert run.result == "ValueError"


def test_sigkill_mid_iteration_ends_with_the_loop_done_once(engine, worker):
    queue = f"{QUEUE}_loopcrash"
    text = f"""
id: test/loop_crash
steps:
  - id: count
    queue: {queue}
    loop:
      do:
        - id: inc
          queue: {queue}
          python: "import time\\ndef main(n: int) -> int:\\n    time.sleep(0.5)\\n    return n + 1"
          with: {{n: "${{{{ previous.inc.result if iteration else 0 }}}}"}}
      until: "${{{{ steps.inc.result >= 4 }}}}"
      max_iterations: 10
"""
    run = killed_while(engine, text, queue, "count[1].inc")
    assert run.status == "succeeded", run.error
    assert run.result == 4
    for i in range(4):
        [row] = [s for s in run.steps if s.path == f"count[{i}].inc"]
        assert (row.attempt, row.status, row.result) == (1, "succeeded", i + 1)
    assert [s.deliveries >= 2 for s in run.steps if s.path == "count[1].inc"] == [True]
    [loop] = [s for s in run.steps if s.path == "count"]
    assert (loop.status, loop.result) == ("succeeded", 4)


def test_a_loop_over_the_configured_cap_is_refused_at_save_with_its_path(api):
    text = f"""
id: test/loop_cap
steps:
  - id: spin
    loop:
      do: [{{id: inc, python: {INC}, with: {{n: 1}}}}]
      until: false
      max_iterations: 5000
"""
    answer = api.put("/api/v1/flows/test/loop_cap", data=text, headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 422, answer.json
    problems = answer.json["errors"]
    assert problems[0]["path"] == "steps[0].loop.max_iterations"
    assert "MILLRACE_MAX_LOOP_ITERATIONS" in problems[0]["message"]
    assert api.get("/api/v1/flows/test/loop_cap").status_code == 404
