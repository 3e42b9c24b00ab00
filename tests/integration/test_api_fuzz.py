"""Schemathesis against the served OpenAPI document: requests generated for every operation,
valid and invalid, sent with an admin's token, find no 5xx and no response the document does
not describe."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from orchestrator.access import Role

pytestmark = pytest.mark.integration

EXAMPLES = 30


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_generated_requests_never_break_the_api(api, mode) -> None:
    api.save_flow("id: fuzz/hello\nsteps:\n  - {id: hi, bash: echo hi}\n")
    document = api.get("/api/v1/openapi.json").json
    schema = schemathesis.openapi.from_dict(document)
    schema.app = api.client.application
    headers = api.headers(Role.ADMIN)
    failures = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30

    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            # A document can fit the JSON Schema and still be refused for what the schema cannot
            # say (a reference to a step that has not run, a negative duration): 422, not a bug.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE, operation.label  # nothing to make invalid
        except BaseException as exc:  # every operation is tried; all failures are shown
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
