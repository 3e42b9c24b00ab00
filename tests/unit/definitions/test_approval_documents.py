"""Approval forms and approvers in a document: what is refused at save (with its path), and
what a decision's values become."""
from __future__ import annotations

import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.definitions.approvals import Approval, RoleName, form_result, values_from_text
from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import ValidationError
from orchestrator.store.access import Role

FORM = Approval.model_validate({"form": {
    "amount": {"type": "integer", "required": True},
    "ratio": {"type": "number", "default": 0.5},
    "note": {"type": "string"},
    "fast": {"type": "boolean", "default": False},
    "tier": {"type": "enum", "enum": ["gold", "silver", 3]},
}})


def problems(approval: str) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        parse_flow(f"id: t/a\nsteps:\n  - id: review\n    approval: {approval}\n")
    return {p.path: p.message for p in caught.value.problems}


def test_the_approvers_roles_are_the_apis_roles():
    assert set(typing.get_args(RoleName)) == {r.value for r in Role}


def test_a_form_and_rule_that_cannot_hold_are_refused_with_their_paths():
    found = problems("{form: {n: {type: integer, default: '3'}, e: {type: enum}, s: {type: text}}}")
    assert "expected an integer" in found["steps[0].approval.form.n"]
    assert "enum" in found["steps[0].approval.form.e"]
    assert "steps[0].approval.form.s.type" in found
    assert "nobody" in problems("{approvers: {}}")["steps[0].approval.approvers"]
    assert "needs a `timeout:`" in problems("{on_timeout: approve}")["steps[0].approval"]
    assert "default for required field 'n'" in problems(
        "{timeout: 1h, on_timeout: approve, form: {n: {type: integer, required: true}}}")["steps[0].approval"]
    assert any(p.startswith("steps[0].approval.form.1bad") for p in problems("{form: {1bad: {type: string}}}"))


def test_the_old_shorthands_still_mean_an_approval_without_a_form():
    for shorthand in ("{}", "true", ""):
        flow = parse_flow(f"id: t/a\nsteps:\n  - id: review\n    approval: {shorthand}\n")
        approval = flow.steps[0].approval
        assert approval.form == {} and approval.approvers is None and approval.on_timeout == "reject"


def test_values_become_a_typed_result_with_defaults():
    assert form_result(FORM, {"amount": 3, "tier": 3}) == {
        "amount": 3, "ratio": 0.5, "note": None, "fast": False, "tier": 3}


@pytest.mark.parametrize("values, path", [
    ({}, "values.amount"),
    ({"amount": "3"}, "values.amount"),
    ({"amount": True}, "values.amount"),
    ({"amount": 1.5}, "values.amount"),
    ({"amount": 1, "ratio": "x"}, "values.ratio"),
    ({"amount": 1, "fast": 1}, "values.fast"),
    ({"amount": 1, "tier": "3"}, "values.tier"),
    ({"amount": 1, "other": 1}, "values.other"),
])
def test_a_value_that_does_not_fit_is_refused_naming_its_field(values, path):
    with pytest.raises(ValidationError) as caught:
        form_result(FORM, values)
    assert path in {p.path for p in caught.value.problems}


def test_a_web_forms_text_is_read_as_the_fields_types():
    read = values_from_text(FORM, {"amount": "12", "ratio": "2.5", "note": "hi", "fast": "on", "tier": "3"})
    assert read == {"amount": 12, "ratio": 2.5, "note": "hi", "fast": True, "tier": 3}
    assert values_from_text(FORM, {"amount": ""}) == {"fast": False}  # empty: left out (then required)
    with pytest.raises(ValidationError) as caught:
        values_from_text(FORM, {"amount": "twelve"})
    assert caught.value.problems[0].path == "values.amount"


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_any_integer_typed_in_a_web_form_comes_back_an_int(n):
    assert form_result(FORM, values_from_text(FORM, {"amount": str(n)}))["amount"] == n


def test_the_approvers_rule_matches_a_token_by_name_or_id_or_its_role():
    rule = Approval.model_validate({"approvers": {"roles": ["admin"], "tokens": ["ops", 7]}}).approvers
    assert rule.allow(token_id=1, token_name="ops", role="viewer")
    assert rule.allow(token_id=7, token_name="x", role="viewer")
    assert rule.allow(token_id=None, token_name=None, role="admin")
    assert not rule.allow(token_id=8, token_name="dev", role="operator")
