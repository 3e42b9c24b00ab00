"""A refused flow says how to fix it: the shape that was expected, the name that was meant,
the cron field that is out of range, the indentation that does not line up."""
from __future__ import annotations

import pytest

from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import ValidationError

OK = "  - {id: first, bash: echo}\n"


@pytest.mark.parametrize(("text", "path", "words"), [
    # did you mean
    ("id: a\nsteps:\n  - {id: s, pyton: 'def main(): pass'}\n", "steps[0]", "did you mean 'python'"),
    ("id: a\nsteps:\n  - {id: s, bash: echo, retyr: {attempts: 2}}\n", "steps[0].retyr",
     "did you mean 'retry'; known here: id, summary"),
    ("id: a\nsteps:\n  - {id: s, bash: echo, retry: {attempt: 2}}\n", "steps[0].retry.attempt",
     "did you mean 'attempts'"),
    ("id: a\nsumary: x\nsteps:\n" + OK, "sumary", "did you mean 'summary'"),
    ("id: a\ntriggers: [{cron: '0 9 * * *', timezon: UTC}]\nsteps:\n" + OK, "triggers[0].timezon",
     "did you mean 'timezone'"),
    ("id: a\nsteps:\n" + OK + "  - {id: s, bash: echo, with: {A: '${{ steps.frist.result }}'}}\n",
     "steps[1].with.A", "unknown step 'frist'; did you mean 'first'"),
    ("id: a\ninputs: {count: {type: integer}}\nsteps:\n  - {id: s, bash: echo, with: {A: '${{ inputs.cont }}'}}\n",
     "steps[0].with.A", "unknown input 'cont'; did you mean 'count'"),
    ("id: a\nsteps:\n  - {id: s, bash: echo, with: {A: '${{ input.n }}'}}\n", "steps[0].with.A",
     "unknown name 'input'; did you mean 'inputs'"),
    ("id: a\nsteps:\n  - {id: s, bash: echo, with: {A: '${{ run.id | uper }}'}}\n", "steps[0].with.A",
     "no filter named 'uper'; did you mean 'upper'; filters: abs"),
    ("id: a\ninputs: {n: {type: int}}\nsteps:\n" + OK, "inputs.n.type", "did you mean 'integer'"),
    # the shape that was expected
    ("id: a\nsteps:\n  - {id: s, bash: echo, retry: 3}\n", "steps[0].retry",
     "expected a mapping, e.g. retry: {attempts: 3, delay: 10s}"),
    ("id: a\nsteps:\n  - {id: s, approval: 'ok?'}\n", "steps[0].approval", "e.g. approval: {description:"),
    ("id: a\nsteps:\n  - {id: s, bash: echo, with: '${{ item }}'}\n", "steps[0].with",
     "e.g. with: {name: \"${{ inputs.name }}\"}"),
    ("id: a\nsteps: {id: s, bash: echo}\n", "steps", "expected a list, e.g. [a, b] or one `- item` per line"),
    # cron fields
    ("id: a\ntriggers: [{cron: '0 25 * * *'}]\nsteps:\n" + OK, "triggers[0].cron",
     "field 2 (hour) is '25'; it takes 0-23"),
    ("id: a\ntriggers: [{cron: '0 9 * * mon-fry'}]\nsteps:\n" + OK, "triggers[0].cron",
     "field 5 (day of week) is 'mon-fry'"),
    # YAML
    ("id: a\nsteps:\n  - id: s\n    bash: echo\n   retry: 3\n", "", "line 5, column 4"),
    ("id: a\nsteps:\n  - id: s\n    bash: echo\n   retry: 3\n", "", "does not line up with the ones above"),
    ("id: a\nsummary: note: this\nsteps:\n" + OK, "", "a value containing ': ' must be quoted"),
    ("id: a\nsteps:\n\t- id: s\n", "", "YAML indents with spaces, never tabs"),
    ("id: a\nsteps:\n  - id: s\n    bash: echo\n  -id: t\n", "", "a list item needs a space after its '-'"),
])
def test_the_message_says_how_to_fix_it(text, path, words) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_flow(text)
    problems = [(p.path, p.message) for p in caught.value.problems]
    assert any(p == path and words in m for p, m in problems), problems


def test_a_trigger_without_an_id_gets_one_by_kind_and_position() -> None:
    flow = parse_flow("id: a\ntriggers:\n  - cron: '0 9 * * *'\n  - {id: nightly, cron: '0 1 * * *'}\n"
                      "  - cron: '0 12 * * *'\n  - flow: other\nsteps:\n" + OK)
    assert [t.id for t in flow.triggers] == ["cron-1", "nightly", "cron-3", "flow-1"]


def test_a_default_trigger_id_skips_one_a_named_trigger_took() -> None:
    flow = parse_flow("id: a\ntriggers:\n  - {id: cron-2, cron: '0 9 * * *'}\n  - cron: '0 1 * * *'\n"
                      "  - cron: '0 2 * * *'\nsteps:\n" + OK)
    assert [t.id for t in flow.triggers] == ["cron-2", "cron-3", "cron-4"]


def test_a_misplaced_key_named_like_a_kind_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_flow("id: a\nsteps:\n  - id: p\n    parallel:\n      - {id: b, steps: [{id: c, bash: echo}], bash: x}\n")
    assert [p.path for p in caught.value.problems] == ["steps[0].parallel[0].bash"]


def test_a_triggers_error_path_names_real_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_flow("id: a\ntriggers:\n  - {cron: 5}\nsteps:\n" + OK)
    assert [p.path for p in caught.value.problems] == ["triggers[0].cron"]
