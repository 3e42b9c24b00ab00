"""Where a restart starts and what it reuses, decided from a plan and recorded attempts alone."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import ValidationError
from orchestrator.execution.lifecycle import StepStatus
from orchestrator.execution.plan import build_plan
from orchestrator.execution.restarts import RestartRequest, choose

PY = '"def main():\\n    return 1"'
FLOW = f"""id: test/restarts
steps:
  - {{id: first, python: {PY}}}
  - id: each
    for_each: [1, 2, 3, 4, 5]
    do:
      - {{id: prep, python: {PY}}}
      - {{id: work, python: {PY}}}
  - id: par
    parallel:
      - id: left
        steps: [{{id: l1, python: {PY}}}, {{id: l2, python: {PY}}}]
      - id: right
        steps: [{{id: r1, python: {PY}}}]
  - id: pick
    switch:
      - if: "${{{{ true }}}}"
        do: [{{id: big, python: {PY}}}, {{id: bigger, python: {PY}}}]
    else: [{{id: small, python: {PY}}}]
  - id: count
    loop:
      do: [{{id: inc, python: {PY}}}]
      until: "${{{{ false }}}}"
      max_iterations: 5
  - {{id: last, python: {PY}}}
on_failure:
  - {{id: alert, python: {PY}}}
"""
PLAN = build_plan(parse_flow(FLOW), 1)


@dataclass(frozen=True)
class Row:
    id: int
    path: str
    kind: str
    attempt: int
    status: StepStatus


def record(*entries: tuple[str, str]) -> list[Row]:
    """Attempts in order: (path, status); the kind is the plan's."""
    rows = []
    for i, (path, status) in enumerate(entries, 1):
        static = "".join(part.split("[")[0] + ("." if n < path.count(".") else "")
                         for n, part in enumerate(path.split(".")))
        rows.append(Row(i, path, PLAN.node(static).kind, 1, StepStatus(status)))
    return rows


def reused_paths(rows: list[Row], request: RestartRequest) -> set[str]:
    by_id = {r.id: r.path for r in rows}
    return {by_id[i] for i in choose(PLAN, rows, request).reused}


ITEMS = [("first", "succeeded"), *[(f"each[{i}].{s}", "succeeded") for i in range(5) for s in ("prep", "work")]]


def test_a_restart_inside_a_for_each_item_reuses_the_other_items_and_the_steps_before_it():
    rows = record(*ITEMS, ("each", "succeeded"), ("par", "failed"))
    choice = choose(PLAN, rows, RestartRequest(start="each[3].work"))
    assert choice.first == 1
    reused = reused_paths(rows, RestartRequest(start="each[3].work"))
    assert reused == {"first", "each[3].prep", *(f"each[{i}].{s}" for i in (0, 1, 2, 4) for s in ("prep", "work"))}


def test_a_restart_inside_a_parallel_branch_reuses_the_sibling_branch_and_what_came_before():
    rows = record(*ITEMS, ("each", "succeeded"), ("par.left.l1", "succeeded"), ("par.left.l2", "failed"),
                  ("par.right.r1", "succeeded"), ("par", "failed"))
    reused = reused_paths(rows, RestartRequest(start="par.left.l2"))
    assert {"par.left.l1", "par.right.r1", "each", "first"} <= reused
    assert not {"par.left.l2", "par"} & reused


def test_a_restart_inside_a_switch_case_reuses_the_case_steps_before_it():
    rows = record(*ITEMS, ("each", "succeeded"), ("par", "succeeded"), ("pick.big", "succeeded"),
                  ("pick.bigger", "failed"), ("pick", "failed"))
    reused = reused_paths(rows, RestartRequest(start="pick.bigger"))
    assert "pick.big" in reused and "par" in reused and not {"pick", "pick.bigger"} & reused
    assert choose(PLAN, rows, RestartRequest(start="pick.bigger")).first == 3


def test_a_restart_inside_a_loop_iteration_reuses_earlier_iterations_only():
    rows = record(*ITEMS, ("each", "succeeded"), ("par", "succeeded"), ("pick", "succeeded"),
                  *[(f"count[{i}].inc", "succeeded") for i in range(4)], ("count", "failed"))
    reused = reused_paths(rows, RestartRequest(start="count[2].inc"))
    assert {"count[0].inc", "count[1].inc"} <= reused and not {"count[2].inc", "count[3].inc", "count"} & reused


def test_from_the_failed_steps_reuses_every_item_that_succeeded_and_reruns_what_follows_a_failure():
    rows = record(("first", "succeeded"), *[(f"each[{i}].prep", "succeeded") for i in range(5)],
                  *[(f"each[{i}].work", "failed" if i in (1, 3) else "succeeded") for i in range(5)],
                  ("each", "failed"), ("on_failure.alert", "succeeded"))
    choice = choose(PLAN, rows, RestartRequest(failed=True))
    assert choice.points == ("each[1].work", "each[3].work") and choice.first == 1
    reused = reused_paths(rows, RestartRequest(failed=True))
    assert reused == {"first", *(f"each[{i}].prep" for i in range(5)), "each[0].work", "each[2].work",
                      "each[4].work"}


def test_a_retried_step_counts_by_its_last_attempt():
    rows = [Row(1, "first", "python", 1, StepStatus.FAILED), Row(2, "first", "python", 2, StepStatus.SUCCEEDED),
            Row(3, "each", "for_each", 1, StepStatus.FAILED)]
    choice = choose(PLAN, rows, RestartRequest(failed=True))
    assert choice.points == ("each",) and choice.reused == (2,)


def test_an_unknown_path_is_refused_naming_it_with_a_near_match():
    rows = record(*ITEMS, ("each", "failed"))
    with pytest.raises(ValidationError) as refused:
        choose(PLAN, rows, RestartRequest(start="each[3].wrok"))
    assert refused.value.problems[0].path == "from"
    assert "'each[3].wrok' is not a step of test/restarts version 1; did you mean 'each[3].work'" in str(refused.value)
    for wrong in ("each.work", "each[1]", "first[0]", "on_failure.alert", "nope"):
        with pytest.raises(ValidationError, match=re.escape(f"'{wrong}' is not a step")):
            choose(PLAN, rows, RestartRequest(start=wrong))


def test_an_item_the_run_never_reached_is_refused():
    with pytest.raises(ValidationError, match="the run has no each\\[7\\]"):
        choose(PLAN, record(*ITEMS, ("each", "failed")), RestartRequest(start="each[7].work"))


def test_from_failed_written_as_a_step_gets_a_hint():
    with pytest.raises(ValidationError, match='send \\{"from_failed": true\\}'):
        choose(PLAN, record(("first", "failed")), RestartRequest(start="failed"))


def test_a_top_level_step_before_the_point_must_have_an_outcome_to_reuse():
    with pytest.raises(ValidationError, match="step 'first' before 'each\\[0\\].work' has no recorded outcome"):
        choose(PLAN, record(("first", "failed"), ("each[0].work", "succeeded")), RestartRequest(start="each[0].work"))
