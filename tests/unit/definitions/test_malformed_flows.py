"""Every mistake in a flow document is reported with its JSON path and what is wrong."""
from __future__ import annotations

import json
import textwrap

import pytest

from orchestrator.definitions.inputs import parse_text_inputs, validate_inputs
from orchestrator.definitions.parser import MAX_DOCUMENT_BYTES, parse_flow
from orchestrator.errors import Problem, ValidationError

OK_STEP = "  - id: ok\n    python: \"def main():\\n    return 1\"\n"

CASES = [
    # (name, document, path, message fragment)
    ("not a mapping", "- just\n- a list\n", "", "must be a mapping with id and steps"),
    ("missing id", "steps:\n" + OK_STEP, "id", "required field missing"),
    ("missing steps", "id: a\n", "steps", "required field missing"),
    ("empty steps", "id: a\nsteps: []\n", "steps", "must not be empty"),
    ("bad flow id", "id: Billing Daily\nsteps:\n" + OK_STEP, "id", "is not allowed here"),
    ("unknown top-level field", "id: a\nstep:\n" + OK_STEP + "steps:\n" + OK_STEP, "step", "unknown field"),
    ("unknown step kind", "id: a\nsteps:\n  - id: x\n    rust: fn main() {}\n", "steps[0]",
     "unknown step kind 'rust'"),
    ("retention of no time", "id: a\nretention: {keep: 0s}\nsteps:\n" + OK_STEP, "retention.keep",
     "greater than 0"),
    ("retention not a duration", "id: a\nretention: {keep: a month}\nsteps:\n" + OK_STEP, "retention.keep",
     "is not a duration"),
    ("retention without keep", "id: a\nretention: {}\nsteps:\n" + OK_STEP, "retention.keep",
     "required field missing"),
    ("step without kind", "id: a\nsteps:\n  - id: x\n", "steps[0]", "step has no kind"),
    ("two kinds", "id: a\nsteps:\n  - id: x\n    python: x\n    bash: y\n", "steps[0]",
     "names python and bash"),
    ("unknown step option", "id: a\nsteps:\n  - id: x\n    bash: echo\n    retries: 3\n",
     "steps[0].retries", "unknown field"),
    ("step id not an identifier", "id: a\nsteps:\n  - id: my-step\n    bash: echo\n",
     "steps[0].id", "is not allowed here"),
    ("duplicate step id", "id: a\nsteps:\n" + OK_STEP + OK_STEP, "steps[1].id",
     "duplicate step id 'ok' (first used at steps[0])"),
    ("duplicate id nested", "id: a\nsteps:\n" + OK_STEP
     + "  - id: loop\n    for_each: [1]\n    do:\n      - id: ok\n        bash: echo\n",
     "steps[1].do[0].id", "duplicate step id 'ok'"),
    ("reference to a later step", "id: a\nsteps:\n  - id: x\n    bash: echo $V\n"
     "    with: {V: \"${{ steps.y.result }}\"}\n  - id: y\n    bash: echo\n",
     "steps[0].with.V", "step 'y' has not run at this point"),
    ("reference to an unknown step", "id: a\nsteps:\n  - id: x\n    bash: echo $V\n"
     "    with: {V: \"${{ steps.nope.result }}\"}\n", "steps[0].with.V", "unknown step 'nope'"),
    ("reference into another branch", textwrap.dedent("""\
        id: a
        steps:
          - id: p
            parallel:
              - id: left
                steps: [{id: l, bash: echo}]
              - id: right
                steps:
                  - id: r
                    bash: echo $V
                    with: {V: "${{ steps.l.result }}"}
        """), "steps[0].parallel[1].steps[0].with.V", "step 'l' has not run at this point"),
    ("expression syntax", "id: a\nsteps:\n  - id: x\n    bash: echo\n    with: {V: \"${{ 1 + }}\"}\n",
     "steps[0].with.V", "unexpected 'end of expression'"),
    ("unclosed expression", "id: a\nsteps:\n  - id: x\n    bash: echo\n    with: {V: \"${{ inputs.a \"}\n",
     "steps[0].with.V", "never closes it"),
    ("unknown name in expression", "id: a\nsteps:\n  - id: x\n    bash: echo\n    with: {V: \"${{ os }}\"}\n",
     "steps[0].with.V", "unknown name 'os'"),
    ("unknown input", "id: a\nsteps:\n  - id: x\n    bash: echo\n    with: {V: \"${{ inputs.day }}\"}\n",
     "steps[0].with.V", "unknown input 'day'"),
    ("item outside for_each", "id: a\nsteps:\n  - id: x\n    bash: echo\n    with: {V: \"${{ item }}\"}\n",
     "steps[0].with.V", "'item' is only defined inside for_each"),
    ("nested expression error path", "id: a\nsteps:\n  - id: x\n    bash: echo\n"
     "    with: {V: {deep: [1, \"${{ ) }}\"]}}\n", "steps[0].with.V.deep[1]", "unexpected ')'"),
    ("if not an expression", "id: a\nsteps:\n  - id: x\n    bash: echo\n    if: sometimes\n",
     "steps[0].if", "expected true, false or an expression"),
    ("for_each not a list", "id: a\nsteps:\n  - id: x\n    for_each: 5\n    do: [{id: y, bash: echo}]\n",
     "steps[0].for_each", "expected a list or an expression"),
    ("for_each without do", "id: a\nsteps:\n  - id: x\n    for_each: [1]\n", "steps[0].do",
     "required field missing"),
    ("bad duration", "id: a\nsteps:\n  - id: x\n    bash: echo\n    timeout: soon\n", "steps[0].timeout",
     "'soon' is not a duration"),
    ("retry attempts zero", "id: a\nsteps:\n  - id: x\n    bash: echo\n    retry: {attempts: 0}\n",
     "steps[0].retry.attempts", "greater than or equal to 1"),
    ("bad backoff", "id: a\nsteps:\n  - id: x\n    bash: echo\n    retry: {attempts: 2, backoff: random}\n",
     "steps[0].retry.backoff", "'constant' or 'exponential'"),
    ("option that does not apply", "id: a\nsteps:\n  - id: x\n    sleep: 5s\n    timeout: 3s\n",
     "steps[0].timeout", "'timeout' does not apply to a sleep step"),
    ("with on a parallel step", "id: a\nsteps:\n  - id: x\n    with: {a: 1}\n    parallel:\n"
     "      - {id: b, steps: [{id: c, bash: echo}]}\n", "steps[0].with", "'with' does not apply"),
    ("switch case without if", "id: a\nsteps:\n  - id: x\n    switch:\n      - do: [{id: y, bash: echo}]\n",
     "steps[0].switch[0].if", "required field missing"),
    ("empty branch", "id: a\nsteps:\n  - id: x\n    parallel:\n      - {id: b, steps: []}\n",
     "steps[0].parallel[0].steps", "must not be empty"),
    ("duplicate branch id", "id: a\nsteps:\n  - id: x\n    parallel:\n      - {id: b, steps: [{id: c, bash: echo}]}\n"
     "      - {id: b, steps: [{id: d, bash: echo}]}\n", "steps[0].parallel[1].id", "duplicate branch id 'b'"),
    ("bad with argument name", "id: a\nsteps:\n  - id: x\n    bash: echo\n    with: {\"my-arg\": 1}\n",
     "steps[0].with", "'my-arg' is not a valid argument name"),
    ("input of unknown type", "id: a\ninputs:\n  n: {type: float}\nsteps:\n" + OK_STEP, "inputs.n.type",
     "'string', 'integer', 'number', 'boolean', 'array' or 'object'"),
    ("input default of wrong type", "id: a\ninputs:\n  n: {type: integer, default: many}\nsteps:\n" + OK_STEP,
     "inputs.n.default", "expected integer, got string"),
    ("error inside on_failure", "id: a\nsteps:\n" + OK_STEP + "on_failure:\n  - id: alert\n    bash: echo\n"
     "    with: {V: \"${{ steps.missing.result }}\"}\n", "on_failure[0].with.V", "unknown step 'missing'"),
    ("yaml syntax", "id: a\nsteps: [\n", "", "invalid YAML at line 3"),
    ("yaml anchors", "id: a\nx: &anchor 1\nsteps:\n" + OK_STEP, "", "anchors and aliases"),
    ("duplicate yaml key", "id: a\nid: b\nsteps:\n" + OK_STEP, "", "duplicate key 'id'"),
    ("json syntax", '{"id": "a", "steps": [}', "", "invalid JSON at line 1"),
    ("python object tag", "id: !!python/object:os.system a\nsteps:\n" + OK_STEP, "", "invalid YAML"),
]


@pytest.mark.parametrize(("document", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_flow_is_reported_at_its_path(document: str, path: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_flow(document)
    problems = caught.value.problems
    matching = [p for p in problems if p.path == path and message in p.message]
    assert matching, f"expected {path!r}: ...{message}... in {problems}"


def test_there_are_at_least_25_distinct_mistakes() -> None:
    assert len({c[0] for c in CASES}) >= 25


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_flow("id: a\nsteps:\n  - id: x\n    bash: echo\n"
                   "    with: {A: \"${{ nope }}\", B: \"${{ steps.z.result }}\"}\n"
                   "  - id: x\n    sleep: 1s\n")
    assert {p.path for p in caught.value.problems} == {"steps[0].with.A", "steps[0].with.B", "steps[1].id"}


def test_alias_bomb_is_refused_before_expansion() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))
    with pytest.raises(ValidationError, match="anchors and aliases"):
        parse_flow(bomb)


def test_oversize_document_is_refused() -> None:
    big = "id: a\nsummary: " + "x" * MAX_DOCUMENT_BYTES + "\nsteps:\n" + OK_STEP
    with pytest.raises(ValidationError, match="the limit is 1048576 bytes"):
        parse_flow(big)


def test_json_documents_are_accepted() -> None:
    flow = parse_flow(json.dumps({"id": "a/b", "steps": [{"id": "x", "bash": "echo 1"}]}))
    assert flow.steps[0].bash == "echo 1"


SPECS = parse_flow(textwrap.dedent("""\
    id: a
    inputs:
      day: {type: string, format: date}
      count: {type: integer, minimum: 1}
      dry_run: {type: boolean, default: false}
      tags: {type: array, items: {type: string}, default: []}
      mode: {type: string, enum: [fast, slow], default: fast}
    steps:
      - id: x
        bash: echo
    """)).inputs


@pytest.mark.parametrize(("given", "path", "message"), [
    ({"count": 1}, "inputs.day", "required input missing"),
    ({"day": "2026-13-01", "count": 1}, "inputs.day", "is not a date"),
    ({"day": "2026-01-01", "count": "3"}, "inputs.count", "expected integer, got string"),
    ({"day": "2026-01-01", "count": True}, "inputs.count", "expected integer, got boolean"),
    ({"day": "2026-01-01", "count": 0}, "inputs.count", "must be at least 1"),
    ({"day": "2026-01-01", "count": 1, "tags": ["a", 2]}, "inputs.tags[1]", "expected string, got integer"),
    ({"day": "2026-01-01", "count": 1, "mode": "medium"}, "inputs.mode", 'must be one of "fast", "slow"'),
    ({"day": "2026-01-01", "count": 1, "colour": "red"}, "inputs.colour", "unknown input"),
])
def test_wrong_inputs_are_reported_at_their_path(given: dict, path: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_inputs(SPECS, given)
    assert any(p.path == path and message in p.message for p in caught.value.problems), caught.value.problems


def test_inputs_get_their_defaults() -> None:
    values = validate_inputs(SPECS, {"day": "2026-01-31", "count": 2})
    assert values == {"day": "2026-01-31", "count": 2, "dry_run": False, "tags": [], "mode": "fast"}


def test_command_line_inputs_are_read_as_their_declared_type() -> None:
    values = parse_text_inputs(SPECS, ["day=2026-01-31", "count=3", "dry_run=true", 'tags=["a"]'])
    assert values == {"day": "2026-01-31", "count": 3, "dry_run": True, "tags": ["a"]}
    with pytest.raises(ValidationError) as caught:
        parse_text_inputs(SPECS, ["count=three"])
    assert caught.value.problems == [Problem("inputs.count", "'three' is not a valid integer")]
