"""Whatever a user sends, the parser answers with a flow or a ValidationError, never a crash."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import ValidationError

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
keys = st.sampled_from(["id", "steps", "python", "bash", "with", "if", "for_each", "do", "parallel",
                        "switch", "else", "retry", "timeout", "sleep", "approval", "flow", "inputs",
                        "cache", "queue", "attempts", "delay", "type", "default", "x"])
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_document_gives_a_flow_or_a_validation_error(document) -> None:
    try:
        parse_flow(json.dumps(document))
    except ValidationError as exc:
        assert exc.problems and all(isinstance(p.message, str) and p.message for p in exc.problems)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_flow_or_a_validation_error(text: str) -> None:
    try:
        parse_flow(text)
    except ValidationError as exc:
        assert exc.problems


step_ids = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(step_ids, min_size=1, max_size=8, unique=True))
def test_a_chain_of_steps_reading_the_previous_one_is_valid(ids: list[str]) -> None:
    steps = [{"id": ids[0], "bash": "echo 1"}]
    for previous, step_id in zip(ids, ids[1:], strict=False):
        steps.append({"id": step_id, "bash": "echo $V", "with": {"V": f"${{{{ steps.{previous}.result }}}}"}})
    flow = parse_flow(json.dumps({"id": "prop/chain", "steps": steps}))
    assert [s.id for s in flow.steps] == ids
