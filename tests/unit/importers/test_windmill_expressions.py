"""Windmill's JavaScript input expressions read as Millrace's Jinja, or refused with the reason."""
from __future__ import annotations

import pytest

from orchestrator.definitions.expressions import compile_value
from orchestrator.importers.windmill_expressions import ExprScope, Untranslatable, to_jinja, to_value


def scope(**more) -> ExprScope:
    base = dict(results={"a": "steps.a.result", "rows": "steps.rows.result.rows"}, previous="steps.a.result",
                in_loop=True, variable=lambda path: "secrets." + path.replace("/", "_"))
    return ExprScope(**{**base, **more})


@pytest.mark.parametrize(("source", "jinja"), [
    ("flow_input.x", "inputs.x"),
    ("flow_input['odd-name']", "inputs['odd-name']"),
    ("results.a.b.c", "steps.a.result.b.c"),
    ("results['a'].items[0]", "steps.a.result.items[0]"),
    ("results.rows[0].qty", "steps.rows.result.rows[0].qty"),
    ("flow_input.iter.value", "item"),
    ("flow_input.iter.index + 1", "(index + 1)"),
    ("flow_input.iter", "{'value': item, 'index': index}"),
    ("previous_result.total", "steps.a.result.total"),
    ("`hi ${flow_input.name}!`", "('hi ' ~ (inputs.name | string) ~ '!')"),
    ("flow_input.a === 1 && !flow_input.b", "((inputs.a == 1) and (not inputs.b))"),
    ("flow_input.a !== null || false", "((inputs.a != none) or false)"),
    ("flow_input.n > 2 ? 'big' : 'small'", "('big' if (inputs.n > 2) else 'small')"),
    ("flow_input.y ?? 3", "(inputs.y if inputs.y is not none else 3)"),
    ("'n=' + results.a", "('n=' ~ steps.a.result)"),
    ("results.a.length", "(steps.a.result | length)"),
    ("flow_input.s.toUpperCase()", "(inputs.s | upper)"),
    ("flow_input.tags.includes('x')", "('x' in inputs.tags)"),
    ("flow_input.tags.join(', ')", "(inputs.tags | join(', '))"),
    ("JSON.stringify(results.a)", "(steps.a.result | tojson)"),
    ("[1, 'two', flow_input.three]", "[1, 'two', inputs.three]"),
    ("{a: 1, 'b c': flow_input.x}", "{'a': 1, 'b c': inputs.x}"),
    ("variable('f/vars/token')", "secrets.f_vars_token"),
    ("-flow_input.n * 2", "((-inputs.n) * 2)"),
])
def test_an_expression_with_a_jinja_form_is_translated(source, jinja):
    assert to_jinja(source, scope()) == jinja


def test_a_translated_expression_evaluates_as_windmill_would():
    value = to_value("`${flow_input.name}: ${results.a.n * 2}` + (flow_input.loud ? '!' : '')", scope())
    template = compile_value(value)
    names = {"inputs": {"name": "ada", "loud": True}, "steps": {"a": {"result": {"n": 21}}}}
    assert template.render(names) == "ada: 42!"


@pytest.mark.parametrize(("source", "reason"), [
    ("results.items.map(x => x * 2)", "a function"),
    ("results.nope", "names no step before this one"),
    ("flow_input.a?.b", "optional chaining"),
    ("Math.random()", "Math.random"),
    ("flow_input.s.padStart(3)", "padStart"),
    ("[...flow_input.xs]", "spread"),
    ("results", "`results` as a whole"),
    ("somewhere.else", "the name `somewhere.else`"),
    ("", "an empty expression"),
])
def test_an_expression_without_one_is_refused_saying_which_part(source, reason):
    with pytest.raises(Untranslatable, match=reason.replace("(", r"\(").replace(".", r"\.").replace("?", r"\?")):
        to_jinja(source, scope())


def test_names_that_only_mean_something_in_some_places_are_refused_elsewhere():
    with pytest.raises(Untranslatable, match="outside a for loop"):
        to_jinja("flow_input.iter.value", scope(in_loop=False))
    with pytest.raises(Untranslatable, match="previous_result"):
        to_jinja("previous_result", scope(previous=None))
    assert to_jinja("error.message", scope(error=True)) == "run.error"
    assert to_jinja("resume.note", scope(resume="steps.ok.result")) == "steps.ok.result.note"
    assert to_jinja("result.count == 0", scope(result=True)) == "(result.count == 0)"
