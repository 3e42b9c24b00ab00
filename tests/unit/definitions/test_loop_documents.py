"""Loops, break_if, fail_if and retry.if in a document: what is refused at save, with its path."""
from __future__ import annotations

import pytest

from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import ValidationError
from orchestrator.services.limits import check_loop_iterations

INC = '"def main(n: int) -> int:\\n    return n + 1"'


def loop_flow(loop: str, extra: str = "") -> str:
    return (f"id: t/loops\nsteps:\n  - id: count\n    loop:\n      do:\n"
            f"        - {{id: inc, python: {INC}, with: {{n: 1}}{extra}}}\n{loop}")


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_flow(text)
    return [(p.path, p.message) for p in caught.value.problems]


def refused_at(text: str, path: str, fragment: str) -> None:
    found = problems(text)
    assert any(p == path and fragment in m for p, m in found), found


def test_a_loop_with_until_and_max_iterations_is_accepted():
    flow = parse_flow(loop_flow("      until: \"${{ steps.inc.result > 3 }}\"\n      max_iterations: 5\n"
                                "      delay: 2s\n", ", break_if: \"${{ result > iteration }}\""))
    [count] = flow.steps
    assert count.loop.max_iterations == 5 and count.loop.delay == 2.0


def test_a_loop_without_max_iterations_is_refused():
    refused_at(loop_flow("      until: \"${{ true }}\"\n"), "steps[0].loop.max_iterations", "required")


def test_a_loop_with_both_until_and_while_or_neither_is_refused():
    both = loop_flow("      until: \"${{ true }}\"\n      while: \"${{ true }}\"\n      max_iterations: 2\n")
    refused_at(both, "steps[0].loop", "exactly one of `until:`")
    refused_at(loop_flow("      max_iterations: 2\n"), "steps[0].loop", "exactly one of `until:`")


def test_a_loop_delay_past_ten_minutes_is_refused():
    refused_at(loop_flow("      until: false\n      max_iterations: 2\n      delay: 1h\n"), "steps[0].loop",
               "delay is at most 600s")


def test_a_loop_over_the_installation_s_cap_is_refused_with_its_path():
    flow = parse_flow(loop_flow("      until: false\n      max_iterations: 1001\n"))
    with pytest.raises(ValidationError) as caught:
        check_loop_iterations(flow, 1000)
    [problem] = caught.value.problems
    assert problem.path == "steps[0].loop.max_iterations"
    assert "at most 1000" in problem.message and "asks for 1001" in problem.message
    check_loop_iterations(flow, 2000)


def test_break_if_outside_any_loop_is_refused():
    text = "id: t/b\nsteps:\n  - {id: x, python: \"def main():\\n    return 1\", break_if: \"${{ result }}\"}\n"
    refused_at(text, "steps[0].break_if", "is in none")


def test_break_if_inside_a_for_each_or_a_switch_in_it_is_accepted():
    parse_flow("id: t/b\nsteps:\n  - id: each\n    for_each: [1, 2]\n    do:\n      - id: pick\n        switch:\n"
               "          - if: \"${{ item > 1 }}\"\n            do:\n"
               "              - {id: x, python: \"def main():\\n    return 1\", break_if: \"${{ result }}\"}\n")


def test_bad_expressions_are_refused_where_they_are():
    refused_at(loop_flow("      until: \"${{ steps.inc.result > }}\"\n      max_iterations: 2\n"),
               "steps[0].loop.until", "")
    refused_at(loop_flow("      until: \"${{ steps.nope.result }}\"\n      max_iterations: 2\n"),
               "steps[0].loop.until", "unknown step 'nope'")
    refused_at(loop_flow("      while: 3\n      max_iterations: 2\n"), "steps[0].loop.while",
               "expected true, false or an expression")
    text = ("id: t/f\nsteps:\n  - id: x\n    python: \"def main():\\n    return 1\"\n"
            "    fail_if: \"${{ result ==== 1 }}\"\n    retry: {attempts: 2, if: \"${{ error.type == }}\"}\n")
    found = [p for p, _ in problems(text)]
    assert "steps[0].fail_if" in found and "steps[0].retry.if" in found


def test_names_that_exist_only_in_some_places_are_refused_elsewhere():
    text = ("id: t/n\nsteps:\n  - id: x\n    python: \"def main(a: int):\\n    return a\"\n"
            "    with: {a: \"${{ result }}\"}\n    fail_if: \"${{ error }}\"\n"
            "  - id: y\n    python: \"def main(a: int):\\n    return a\"\n    with: {a: \"${{ iteration }}\"}\n"
            "    retry: {attempts: 2, if: \"${{ result }}\"}\n")
    found = problems(text)
    assert ("steps[0].with.a",
            "'result' is only defined in `fail_if`, `break_if`, `stop_if` and `labels` (the step's own result)"
            ) in found
    assert any(p == "steps[0].fail_if" and "'error' is only defined in `retry.if`" in m for p, m in found)
    assert any(p == "steps[1].with.a" and "'iteration' is only defined inside a loop" in m for p, m in found)
    assert any(p == "steps[1].retry.if" and "'result' is only defined" in m for p, m in found)


def test_the_body_of_a_loop_reads_iteration_and_previous_and_until_reads_the_body():
    parse_flow(loop_flow("      until: \"${{ steps.inc.result > iteration and previous }}\"\n      max_iterations: 2\n",
                         ", fail_if: \"${{ previous.inc.result == result }}\""))


def test_retry_if_applies_only_where_retry_does():
    text = "id: t/r\nsteps:\n  - {id: s, sleep: 1s, retry: {attempts: 2, if: \"${{ true }}\"}}\n"
    refused_at(text, "steps[0].retry", "does not apply to a sleep step")
