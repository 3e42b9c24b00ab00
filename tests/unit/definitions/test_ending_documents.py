"""stop_if and finally in a document: what is accepted, and what is refused at save with its path."""
from __future__ import annotations

import pytest

from orchestrator.definitions.flow import Flow
from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import ValidationError

ONE = '"def main() -> int:\\n    return 1"'


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_flow(text)
    return [(p.path, p.message) for p in caught.value.problems]


def test_stop_if_and_finally_are_accepted_with_run_status_and_the_top_level_steps():
    flow = parse_flow(f"""
id: t/endings
steps:
  - {{id: a, python: {ONE}, stop_if: "${{{{ result == 1 }}}}"}}
  - id: each
    for_each: [1, 2]
    do:
      - {{id: b, python: {ONE}, stop_if: "${{{{ result > item }}}}"}}
finally:
  - id: report
    bash: echo "$S $E $A"
    with: {{S: "${{{{ run.status }}}}", E: "${{{{ run.error }}}}", A: "${{{{ steps.a.result }}}}"}}
""")
    assert [s.id for s in flow.finally_] == ["report"]
    assert flow.steps[0].stop_if == "${{ result == 1 }}"


def test_a_stop_if_that_does_not_parse_or_reads_unknown_names_is_refused_at_its_path():
    found = problems(f"""
id: t/endings
steps:
  - {{id: a, python: {ONE}, stop_if: "${{{{ resul == 1 }}}}"}}
  - {{id: b, python: {ONE}, stop_if: "${{{{ result == ( }}}}"}}
  - {{id: c, python: {ONE}, stop_if: "yes"}}
""")
    paths = [p for p, _ in found]
    assert paths == ["steps[0].stop_if", "steps[1].stop_if", "steps[2].stop_if"], found
    assert "unknown name 'resul'" in found[0][1]
    assert found[2][1] == "expected true, false or an expression ${{ ... }}"


def test_stop_if_in_on_failure_or_finally_is_refused():
    found = problems(f"""
id: t/endings
steps:
  - {{id: a, python: {ONE}}}
on_failure:
  - {{id: b, python: {ONE}, stop_if: true}}
finally:
  - {{id: c, python: {ONE}, stop_if: "${{{{ result }}}}"}}
""")
    assert ("on_failure[0].stop_if", "stop_if ends a run's main steps; steps in `on_failure` run after them and "
            "cannot stop the run (use `if:` on later steps)") in found
    assert any(p == "finally[0].stop_if" and "steps in `finally`" in m for p, m in found), found


def test_finally_step_ids_are_unique_with_the_rest_of_the_flow():
    found = problems(f"""
id: t/endings
steps:
  - {{id: a, python: {ONE}}}
on_failure:
  - {{id: b, python: {ONE}}}
finally:
  - {{id: a, python: {ONE}}}
  - {{id: b, python: {ONE}}}
""")
    assert ("finally[0].id", "duplicate step id 'a' (first used at steps[0])") in found
    assert ("finally[1].id", "duplicate step id 'b' (first used at on_failure[0])") in found


def test_finally_reads_only_top_level_steps_and_no_loop_names():
    found = problems(f"""
id: t/endings
steps:
  - id: each
    for_each: [1]
    do:
      - {{id: inner, python: {ONE}}}
finally:
  - id: c
    bash: echo "$X $Y"
    with: {{X: "${{{{ steps.inner.result }}}}", Y: "${{{{ item }}}}"}}
""")
    assert any(p == "finally[0].with.X" and "has not run at this point" in m for p, m in found), found
    assert any(p == "finally[0].with.Y" and "only defined inside for_each" in m for p, m in found), found


def test_the_json_schema_describes_finally_and_stop_if():
    schema = Flow.model_json_schema(by_alias=True)
    assert "finally" in schema["properties"] and "cancelled" in schema["properties"]["finally"]["description"]
    python_step = schema["$defs"]["PythonStep"]["properties"]
    assert "stop_if" in python_step and "succeeded" in python_step["stop_if"]["description"]
