"""Expressions: whole values keep their type, strings interpolate, the sandbox holds."""
from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.definitions.expressions import compile_expression, compile_value
from orchestrator.errors import ExpressionError

NAMES = {
    "inputs": {"n": 3, "word": "hi", "flag": False},
    "steps": {"a": {"result": {"items": [1, 2, 3], "total": 6}, "status": "succeeded"}},
    "run": {"id": "r1"},
    "item": {"name": "x"},
    "index": 2,
    "vars": {},
    "secrets": {},
}


@pytest.mark.parametrize(("value", "expected"), [
    ("${{ inputs.n }}", 3),
    ("${{ inputs.n * 2 }}", 6),
    ("${{ steps.a.result }}", {"items": [1, 2, 3], "total": 6}),
    ("${{ steps.a.result.items }}", [1, 2, 3]),  # a key named like a dict method
    ("${{ steps.a.result['total'] > 5 }}", True),
    ("${{ not inputs.flag }}", True),
    ("  ${{ inputs.word }}", "  hi"),
    ("n=${{ inputs.n }}, item=${{ item }}", 'n=3, item={"name": "x"}'),
    ("${{ index }}${{ index }}", "22"),
    ("${{ none }}", None),
    ("${{ [1, 2] | sum }}", 3),
    ("no expression", "no expression"),
    (5, 5),
    ({"a": ["${{ inputs.n }}", {"b": "${{ index + 1 }}"}]}, {"a": [3, {"b": 3}]}),
])
def test_values_render_with_their_types(value, expected) -> None:
    assert compile_value(value).render(NAMES) == expected


def test_references_name_the_steps_and_inputs_read() -> None:
    refs = compile_value({"x": "${{ steps.a.result + steps['b'].result }}", "y": "${{ inputs.n }}"}).references
    assert refs.steps == {"a", "b"} and refs.inputs == {"n"} and {"steps", "inputs"} <= refs.names


@pytest.mark.parametrize("source", [
    "inputs.__class__.__mro__",
    "steps.a.result.__init__.__globals__",
    "''.__class__.__subclasses__()",
])
def test_the_sandbox_refuses_python_internals(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source).evaluate(NAMES)


def test_the_sandbox_refuses_mutation() -> None:
    with pytest.raises(ExpressionError, match="unsafe|not safely callable|access to attribute"):
        compile_expression("inputs.update({'n': 1})").evaluate(NAMES)
    assert NAMES["inputs"]["n"] == 3


def test_a_missing_attribute_is_an_error_naming_the_expression() -> None:
    with pytest.raises(ExpressionError, match=r"\$\{\{ steps.a.result.missing \}\}"):
        compile_value("${{ steps.a.result.missing }}").render(NAMES)


def test_expressions_are_compiled_once() -> None:
    assert compile_expression("inputs.n + 1") is compile_expression("inputs.n + 1")


@given(st.one_of(st.integers(), st.text(), st.booleans(), st.none(),
                 st.lists(st.integers(), max_size=5),
                 st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=5)))
def test_a_whole_expression_returns_the_value_unchanged(value) -> None:
    assert compile_value("${{ inputs.v }}").render({"inputs": {"v": value}}) == value


@given(st.text(alphabet=st.characters(blacklist_characters="${}"), max_size=40))
def test_text_without_expressions_is_left_alone(text: str) -> None:
    assert compile_value(text).render({}) == text


@pytest.mark.parametrize("source,says", [
    ("'a' * 10**9", "at most 1,000,000"),
    ("10 ** 5000", "larger than 4096 bits"),
    ("10 ** (10 ** 7)", "larger than 4096 bits"),
    ("(range(99999) | list) * 200", "19,999,800 items"),
    ("[0] * 10**7 + [1]", "at most 1,000,000"),
    ("'x'.ljust(10**9)", "ljust() would build"),
    ("'x' | center(10**9)", "center() would build"),
    ("('a' * 1000) | replace('a', 'b' * 2000)", "replace() would build 2,000,000"),
    ("'%999999999d' % 1", "format width"),
    ("'{:>999999999}'.format(1)", "format width"),
])
def test_an_expression_cannot_build_a_huge_value(source: str, says: str) -> None:
    # read as reading nothing, it is refused when compiled (at save); reading a name, at run
    with pytest.raises(ExpressionError, match=re.escape(says)):
        compile_value("${{ " + source + " }}")
    late = compile_value("${{ inputs.pad ~ (" + source + ") }}")
    with pytest.raises(ExpressionError, match=re.escape(says)):
        late.render({"inputs": {"pad": ""}})


def test_within_the_budget_the_same_operators_work() -> None:
    assert compile_value("${{ 'ab' * 3 ~ '%3d' % 7 ~ ('x' | center(5)) }}").render({}) == "ababab  7  x  "
    assert compile_value("${{ 2 ** 64 * 3 }}").render({}) == 3 * 2 ** 64
    assert compile_value("${{ (range(3) | list) * 2 + [9] }}").render({}) == [0, 1, 2, 0, 1, 2, 9]
