"""Flows run end to end: RabbitMQ carries the canvas, a real worker runs it, Postgres records it."""
from __future__ import annotations

import time

import pytest

from orchestrator.cli.wiring import publisher_for
from orchestrator.definitions.parser import parse_flow
from orchestrator.execution.lifecycle import StepStatus
from orchestrator.services.runs import submit, wait_for_run
from orchestrator.services.saving import save_flow
from orchestrator.store import tables, views

pytestmark = pytest.mark.integration


def attempts(run: dict, path: str) -> list[dict]:
    return [s for s in run.steps if s.path == path]


def only(run: dict, path: str) -> dict:
    rows = attempts(run, path)
    assert len(rows) == 1, f"{path}: {rows}"
    return rows[0]


def test_python_and_bash_steps_pass_values_directly(run_flow):
    run = run_flow("""
id: test/hello
inputs:
  name: {type: string}
  times: {type: integer, default: 2}
steps:
  - id: greet
    python: |
      def main(name: str, times: int) -> dict:
          return {"text": f"hello {name}", "n": times}
    with: {name: "${{ inputs.name }}", times: "${{ inputs.times }}"}
  - id: shout
    bash: |
      echo "working" >&2
      echo "$TEXT" | tr a-z A-Z
    with: {TEXT: "${{ steps.greet.result.text }}"}
  - id: both
    python: |
      def main(shout: str, n: int, mixed: str) -> list:
          return [shout] * n + [mixed]
    with:
      shout: "${{ steps.shout.result }}"
      n: "${{ steps.greet.result.n }}"
      mixed: "n=${{ steps.greet.result.n }}!"
""", {"name": "ada"})
    assert run.status == "succeeded", run.error
    assert run.result == ["HELLO ADA", "HELLO ADA", "n=2!"]
    shout = only(run, "shout")
    assert "working" in shout.logs
    assert shout.created_at <= shout.started_at <= shout.finished_at


ALL_KINDS = """
id: test/all_kinds
inputs:
  word: {type: string, default: hello}
  n: {type: integer, default: 4}
steps:
  - id: squares
    python: |
      def main(n: int) -> list:
          return [i * i for i in range(n)]
    with: {n: "${{ inputs.n }}"}
    cache: 1h
    timeout: 20s
    queue: QUEUE_SPECIAL
  - id: both
    parallel:
      - id: total
        steps:
          - id: add
            python: "def main(xs: list) -> int:\\n    return sum(xs)"
            with: {xs: "${{ steps.squares.result }}"}
      - id: shout
        steps:
          - id: upper
            bash: echo "$WORD" | tr a-z A-Z
            with: {WORD: "${{ inputs.word }}"}
  - id: pick
    switch:
      - if: ${{ steps.both.result.total > 50 }}
        do: [{id: big, python: "def main():\\n    return 'big'"}]
    else:
      - {id: small, python: "def main():\\n    return 'small'"}
  - id: doubled
    for_each: ${{ steps.squares.result }}
    parallel: 2
    do:
      - id: double
        python: "def main(x: int, i: int) -> list:\\n    return [i, x * 2]"
        with: {x: "${{ item }}", i: "${{ index }}"}
  - id: flaky
    python: |
      import os
      def main() -> int:
          attempt = int(os.environ["MILLRACE_ATTEMPT"])
          if attempt < 2:
              raise RuntimeError("not yet")
          return attempt
    retry: {attempts: 3, delay: 100ms, backoff: exponential}
  - id: optional
    bash: exit 3
    continue_on_error: true
  - id: never
    if: ${{ inputs.n > 100 }}
    bash: echo never
  - id: nap
    sleep: 1s
  - id: gate
    approval: {timeout: 1h}
  - id: child
    flow: test/child
    with: {value: "${{ steps.both.result.total }}"}
  - id: summary
    python: |
      def main(pick, doubled, flaky, optional, never, child, shout) -> dict:
          return {"pick": pick, "doubled": doubled, "flaky": flaky, "optional": optional,
                  "never": never, "child": child, "shout": shout}
    with:
      pick: "${{ steps.pick.result }}"
      doubled: "${{ steps.doubled.result }}"
      flaky: "${{ steps.flaky.result }}"
      optional: "${{ steps.optional.status }}"
      never: "${{ steps.never.status }}"
      child: "${{ steps.child.result }}"
      shout: "${{ steps.both.result.shout }}"
"""

CHILD = """
id: test/child
inputs:
  value: {type: integer}
steps:
  - id: plus_one
    python: "def main(v: int) -> int:\\n    return v + 1"
    with: {v: "${{ inputs.value }}"}
"""


def test_every_step_kind_and_option_produces_the_documented_result(engine, worker):
    child = parse_flow(CHILD)
    save_flow(engine, child, CHILD)
    text = ALL_KINDS.replace("QUEUE_SPECIAL", worker_queue_special())
    run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
    wait_for_step(engine, run_id, "gate", StepStatus.WAITING)
    assert views.get_run(engine, run_id).status == "suspended"
    approve(run_id, "gate")
    assert wait_for_run(engine, run_id, 120).finished
    run = views.get_run(engine, run_id)
    assert run.status == "succeeded", run.error
    assert run.result == {
        "pick": "small",  # 0 + 1 + 4 + 9 = 14
        "doubled": [[0, 0], [1, 2], [2, 8], [3, 18]],
        "flaky": 2,
        "optional": "failed",
        "never": "skipped",
        "child": 15,
        "shout": "HELLO",
    }
    assert [a.status for a in attempts(run, "flaky")] == ["failed", "succeeded"]
    assert only(run, "optional").error.startswith("exit code 3")
    assert only(run, "both").result == {"total": 14, "shout": "HELLO"}
    assert [only(run, f"doubled[{i}].double").item_index for i in range(4)] == [0, 1, 2, 3]
    nap = only(run, "nap")
    assert (nap.finished_at - nap.started_at).total_seconds() >= 1.0
    assert only(run, "gate").result["approved"] is True
    # The subflow ran as its own run, linked to the parent's step.
    child_run = views.get_run(engine, only_child_run(engine, run_id))
    assert child_run.status == "succeeded" and child_run.result == 15

    # Same inputs again: `squares` comes from the cache.
    second = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
    wait_for_step(engine, second, "gate", StepStatus.WAITING)
    approve(second, "gate")
    wait_for_run(engine, second, 120)
    again = views.get_run(engine, second)
    assert again.status == "succeeded"
    assert only(again, "squares").cached is True
    assert only(run, "squares").cached is False


def test_for_each_over_zero_one_and_a_hundred_items(run_flow):
    flow = """
id: test/loop
inputs:
  count: {type: integer}
steps:
  - id: items
    python: "def main(n: int) -> list:\\n    return list(range(n))"
    with: {n: "${{ inputs.count }}"}
  - id: each
    for_each: ${{ steps.items.result }}
    do:
      - id: square
        python: "def main(x: int) -> int:\\n    return x * x"
        with: {x: "${{ item }}"}
      - id: label
        bash: echo "$I:$SQ"
        with: {I: "${{ index }}", SQ: "${{ steps.square.result }}"}
  - id: count
    python: "def main(xs: list) -> int:\\n    return len(xs)"
    with: {xs: "${{ steps.each.result }}"}
"""
    empty = run_flow(flow, {"count": 0})
    assert empty.status == "succeeded"
    assert only(empty, "each").result == [] and empty.result == 0
    one = run_flow(flow, {"count": 1})
    assert only(one, "each").result == ["0:0"]
    hundred = run_flow(flow, {"count": 100})
    assert hundred.status == "succeeded", hundred.error
    assert only(hundred, "each").result == [f"{i}:{i * i}" for i in range(100)]
    assert len([s for s in hundred.steps if s.step_id == "square"]) == 100


def test_nested_parallel_inside_for_each_inside_switch(run_flow):
    run = run_flow("""
id: test/nested
inputs:
  mode: {type: string, default: deep}
steps:
  - id: route
    switch:
      - if: ${{ inputs.mode == 'deep' }}
        do:
          - id: rows
            for_each: [1, 2, 3]
            do:
              - id: fan
                parallel:
                  - id: plus
                    steps:
                      - id: add
                        python: "def main(x: int) -> int:\\n    return x + 10"
                        with: {x: "${{ item }}"}
                  - id: times
                    steps:
                      - id: mul
                        python: "def main(x: int) -> int:\\n    return x * 10"
                        with: {x: "${{ item }}"}
                      - id: neg
                        python: "def main(x: int) -> int:\\n    return -x"
                        with: {x: "${{ steps.mul.result }}"}
    else:
      - {id: shallow, python: "def main():\\n    return 'shallow'"}
""")
    assert run.status == "succeeded", run.error
    assert run.result == [
        {"plus": 11, "times": -10},
        {"plus": 12, "times": -20},
        {"plus": 13, "times": -30},
    ]
    assert only(run, "route.rows[2].fan.times.neg").result == -30


def test_bounded_for_each_runs_at_most_n_items_at_once(run_flow):
    run = run_flow("""
id: test/bounded
steps:
  - id: each
    for_each: [0, 1, 2, 3, 4, 5]
    parallel: 2
    do:
      - id: work
        python: "import time\\ndef main(x: int) -> int:\\n    time.sleep(0.3)\\n    return x"
        with: {x: "${{ item }}"}
""")
    assert run.result == [0, 1, 2, 3, 4, 5]
    spans = [(s.started_at, s.finished_at) for s in run.steps if s.step_id == "work"]
    for start, _ in spans:
        overlapping = sum(1 for s, f in spans if s <= start < f)
        assert overlapping <= 2


def test_retry_fails_twice_then_succeeds_with_three_attempt_rows(run_flow):
    run = run_flow("""
id: test/retry
steps:
  - id: flaky
    python: |
      import os
      def main() -> str:
          if int(os.environ["MILLRACE_ATTEMPT"]) < 3:
              raise ValueError("attempt " + os.environ["MILLRACE_ATTEMPT"])
          return "third time lucky"
    retry: {attempts: 5, delay: 50ms}
""")
    assert run.status == "succeeded"
    rows = attempts(run, "flaky")
    assert [(r.attempt, r.status) for r in rows] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert rows[0].error == "ValueError: attempt 1"
    assert "Traceback" in rows[0].logs
    assert run.result == "third time lucky"


def test_timeout_kills_an_infinite_loop(run_flow):
    started = time.monotonic()
    run = run_flow("""
id: test/timeout
steps:
  - id: forever
    python: "def main():\\n    while True:\\n        pass"
    timeout: 1s
  - id: after
    bash: echo unreachable
""")
    assert time.monotonic() - started < 30
    assert run.status == "failed"
    step = only(run, "forever")
    assert step.status == "failed" and "timed out after 1s" in step.error
    assert attempts(run, "after") == []
    assert "forever" in run.error


def test_on_failure_steps_run_with_the_error(run_flow):
    run = run_flow("""
id: test/on_failure
steps:
  - id: boom
    python: "def main():\\n    raise RuntimeError('disk full')"
  - id: unreached
    bash: echo no
on_failure:
  - id: alert
    bash: |
      echo "run $MILLRACE_RUN_ID failed: $MILLRACE_ERROR"
  - id: report
    python: "def main(error: str) -> str:\\n    return 'reported: ' + error"
    with: {error: "${{ run.error }}"}
""")
    assert run.status == "failed"
    assert "RuntimeError: disk full" in run.error
    alert = only(run, "on_failure.alert")
    assert alert.status == "succeeded"
    assert alert.result == f"run {run.id} failed: {run.error}"
    assert only(run, "on_failure.report").result == f"reported: {run.error}"
    assert attempts(run, "unreached") == []


def test_a_step_calling_os_exit_fails_that_step_only(run_flow):
    run = run_flow("""
id: test/exit
steps:
  - id: first
    python: "def main():\\n    return 1"
  - id: crash
    python: "import os\\ndef main():\\n    os._exit(1)"
    continue_on_error: true
  - id: after
    python: "def main(x: int) -> int:\\n    return x + 1"
    with: {x: "${{ steps.first.result }}"}
""")
    assert run.status == "succeeded"
    assert only(run, "crash").status == "failed"
    assert "exited with code 1" in only(run, "crash").error
    assert run.result == 2


def test_approval_resumes_the_run_and_rejection_fails_it(engine, worker):
    text = """
id: test/approval
steps:
  - id: before
    python: "def main():\\n    return 'prepared'"
  - id: review
    approval: {description: "ship it?"}
  - id: after
    python: "def main(x: str) -> str:\\n    return x + ' and shipped'"
    with: {x: "${{ steps.before.result }}"}
"""
    run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
    wait_for_step(engine, run_id, "review", StepStatus.WAITING)
    time.sleep(0.5)
    assert views.get_run(engine, run_id).status == "suspended"
    assert attempts(views.get_run(engine, run_id), "after") == []
    approve(run_id, "review")
    wait_for_run(engine, run_id, 60)
    run = views.get_run(engine, run_id)
    assert run.status == "succeeded" and run.result == "prepared and shipped"

    rejected = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
    wait_for_step(engine, rejected, "review", StepStatus.WAITING)
    from orchestrator.cli.main import main

    assert main(["reject", rejected, "review", "--reason", "not today"]) == 0
    wait_for_run(engine, rejected, 60)
    run = views.get_run(engine, rejected)
    assert run.status == "failed" and "not today" in run.error


def test_forty_sequential_steps_complete(run_flow):
    steps = "\n".join(
        f"  - id: s{i}\n    python: \"def main(x: int) -> int:\\n    return x + 1\"\n"
        f"    with: {{x: \"${{{{ steps.s{i - 1}.result }}}}\"}}" if i else
        "  - id: s0\n    python: \"def main() -> int:\\n    return 0\""
        for i in range(40)
    )
    run = run_flow(f"id: test/forty\nsteps:\n{steps}\n")
    assert run.status == "succeeded"
    assert run.result == 39
    assert len(run.steps) == 40


# --- helpers -----------------------------------------------------------------------------

def worker_queue_special() -> str:
    from tests.conftest import QUEUE

    return f"{QUEUE}_special"


def wait_for_step(engine, run_id: str, path: str, status: StepStatus, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for step in views.get_run(engine, run_id).steps:
            if step.path == path and step.status == status.value:
                return step.id
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {status}: {views.get_run(engine, run_id)}")


def approve(run_id: str, step: str) -> None:
    from orchestrator.cli.main import main

    assert main(["approve", run_id, step]) == 0


def only_child_run(engine, parent_run_id: str) -> str:
    from sqlalchemy import select

    with engine.connect() as conn:
        return conn.execute(select(tables.runs.c.id).where(tables.runs.c.parent_run_id == parent_run_id)).scalar()



def test_a_step_with_a_queue_waits_for_a_worker_of_that_queue(engine, worker):
    from tests.conftest import QUEUE, Worker

    queue = f"{QUEUE}_gpu"
    text = f"""
id: test/queues
steps:
  - id: anywhere
    python: "def main():\\n    return 20"
  - id: on_gpu
    queue: {queue}
    python: "def main(x: int) -> int:\\n    return x + 1"
    with: {{x: "${{{{ steps.anywhere.result }}}}"}}
"""
    run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
    wait_for_step(engine, run_id, "anywhere", StepStatus.SUCCEEDED)
    time.sleep(2)
    run = views.get_run(engine, run_id)
    assert run.status == "running" and attempts(run, "on_gpu") == []
    gpu_worker = Worker([queue], concurrency=1)
    try:
        assert wait_for_run(engine, run_id, 60).value == "succeeded"
    finally:
        gpu_worker.stop()
    run = views.get_run(engine, run_id)
    assert run.result == 21
    assert only(run, "on_gpu").worker != only(run, "anywhere").worker
