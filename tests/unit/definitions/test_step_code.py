"""Mistakes in a step's code that are visible without running it are refused at save and
validate time, each naming the place."""
from __future__ import annotations

import pytest

from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import ValidationError

ADD = "def main(n: int, label: str = 'x') -> int:\n    return n + 1\n"


def _problems(step: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        parse_flow("id: a\nsteps:\n" + step)
    return [(p.path, p.message) for p in caught.value.problems]


def _python(code: str, with_: str = "{}") -> str:
    body = "".join(f"      {line}\n" for line in code.splitlines())
    return f"  - id: s\n    with: {with_}\n    python: |\n{body}"


@pytest.mark.parametrize(("step", "path", "words"), [
    (_python("def helper():\n    return 1\n"), "steps[0].python", "defines a top-level `def main(...)`"),
    (_python("def main(:\n    pass\n"), "steps[0].python (line 1, column 10)", "Python syntax error"),
    (_python("def main(n):\n  return n\n   x = 1\n", "{n: 1}"), "steps[0].python (line 3, column 3)",
     "unexpected indent"),
    (_python(ADD, "{m: 3}"), "steps[0].with.m", "main takes no input 'm'; it takes: n, label"),
    (_python(ADD, "{nn: 3}"), "steps[0].with.nn", "did you mean 'n'"),
    (_python(ADD, "{label: y}"), "steps[0].with", "main needs input 'n'"),
    (_python(ADD, '{n: "abc"}'), "steps[0].with.n", "main's parameter 'n' takes an integer, not a string ('abc')"),
    (_python(ADD, "{n: true}"), "steps[0].with.n", "takes an integer, not true or false"),
    (_python("def main(xs: list[int]):\n    return xs\n", "{xs: [1, two]}"), "steps[0].with.xs",
     "takes a list of integers"),
    (_python("def main(n: int | None):\n    return n\n", "{n: abc}"), "steps[0].with.n",
     "takes an integer or null"),
    ("  - id: s\n    javascript: 'const x = 1;'\n", "steps[0].javascript", "defines `function main(...)`"),
    ("  - id: s\n    with: {b: 1}\n    javascript: 'export function main(a) { return a }'\n", "steps[0].with.b",
     "main takes no input 'b'"),
    ("  - id: loop\n    for_each: [1, 2]\n    do:\n" + "".join("  " + line + "\n" for line in _python(
        ADD, "{n: nope}").splitlines()), "steps[0].do[0].with.n", "takes an integer"),
])
def test_a_static_mistake_is_refused_naming_the_place(step, path, words) -> None:
    problems = _problems(step)
    assert any(p == path and words in m for p, m in problems), problems


@pytest.mark.parametrize("with_", ['{n: "${{ inputs.n }}"}', "{n: 3}", "{n: 3, label: y}"])
def test_expressions_and_fitting_literals_pass(with_) -> None:
    parse_flow("id: a\ninputs:\n  n: {type: integer}\nsteps:\n" + _python(ADD, with_))


def test_a_main_taking_keyword_arguments_accepts_any_name() -> None:
    parse_flow("id: a\nsteps:\n" + _python("def main(**given):\n    return given\n", "{anything: 1}"))


@pytest.mark.parametrize(("code", "with_"), [
    ("try:\n    def main():\n        return 1\nexcept Exception:\n    pass\n", "{}"),  # main under a try
    ("def impl():\n    return 1\n\nmain = impl\n", "{anything: 1}"),  # main assigned: checked at run time
    ("def main(x={[]: 1}):\n    return 1\n", "{}"),  # a default literal_eval cannot read
    ("def main(day: str):\n    return day\n", "{day: 2024-01-01}"),  # a YAML date is text to main
    ("from typing import Literal\n\ndef main(d: Literal[-1, 1]):\n    return d\n", "{d: -1}"),
])
def test_code_the_runtime_accepts_is_not_refused(code, with_) -> None:
    parse_flow("id: a\nsteps:\n" + _python(code, with_))


def test_code_too_deep_to_read_is_refused_not_crashed() -> None:
    problems = _problems(_python("x = " + "-" * 200_000 + "1\ndef main():\n    return x\n"))
    assert problems and problems[0][0].startswith("steps[0].python"), problems
    deep = "{v: " + "[" * 900 + "1" + "]" * 900 + "}"
    parse_flow("id: a\nsteps:\n" + _python("def main(v):\n    return v\n", deep))  # nested values, no overflow
