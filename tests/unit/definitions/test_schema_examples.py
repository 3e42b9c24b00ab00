"""The JSON Schema shows an example of every construct, and every example is a flow Millrace
saves: it passes the schema, the parser and the save-time checks."""
from __future__ import annotations

import jsonschema
import pytest

from orchestrator.definitions.examples import (
    FLOW_EXAMPLES,
    KIND_EXAMPLES,
    OPTION_EXAMPLES,
    TRIGGER_EXAMPLES,
    example_flows,
    flow_schema,
)
from orchestrator.definitions.flow import Flow
from orchestrator.definitions.parser import flow_from_data
from orchestrator.definitions.steps import KINDS, StepBase
from orchestrator.definitions.triggers import _KINDS as TRIGGER_KINDS
from orchestrator.definitions.validation import check_flow, check_triggers

SCHEMA = flow_schema()


def _aliases(model) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def test_every_step_kind_option_flow_field_and_trigger_kind_has_an_example() -> None:
    assert set(KIND_EXAMPLES) == set(KINDS)
    assert set(OPTION_EXAMPLES) == _aliases(StepBase)
    assert set(FLOW_EXAMPLES) == _aliases(Flow)
    assert set(TRIGGER_EXAMPLES) == set(TRIGGER_KINDS)


def test_the_schema_carries_them() -> None:
    defs = SCHEMA["$defs"]
    for kind, cls in KINDS.items():
        assert defs[cls.__name__]["examples"] == [KIND_EXAMPLES[kind]], kind
        assert defs[cls.__name__]["properties"]["fail_if"]["examples"] == [OPTION_EXAMPLES["fail_if"]["fail_if"]]
    for field in FLOW_EXAMPLES:
        assert SCHEMA["properties"][field]["examples"] == [FLOW_EXAMPLES[field]], field
    assert defs["AmqpTrigger"]["examples"] == [TRIGGER_EXAMPLES["amqp"]]


@pytest.mark.parametrize("name", sorted(example_flows()))
def test_each_example_is_a_flow_millrace_saves(name) -> None:
    document = example_flows()[name]
    errors = [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(document)]
    assert not errors, errors
    flow = flow_from_data(document)
    assert check_flow(flow) + check_triggers(flow) == []
