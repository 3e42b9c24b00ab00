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
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup

from orchestrator.store.access import Role, create_token

pytestmark = pytest.mark.integration

EXAMPLES = 30


# Revoking tokens at random would revoke the fuzzer's own token and turn the rest of the run
# into 401s; revocation has its own test (test_api_flows).
SKIPPED = {"DELETE /api/v1/tokens/{token_id}"}


# Two mutations that never reach the API, so its accepting the request is no failure: an
# unknown query parameter whose value serializes to nothing (an empty list: no `?x=` at all),
# and a removed Authorization header (this test sends its own token with every request).
_NEVER_SENT = {"query: violates `additionalProperties`", "header: violates `required` (was Authorization)"}


def _vanished(failure: Exception) -> bool:
    if not isinstance(failure, AcceptedNegativeData):
        return False
    invalid = failure.message.partition("Invalid component:")[2]
    components = {line.strip().removeprefix("- ") for line in invalid.splitlines() if line.strip()}
    return bool(components) and components <= _NEVER_SENT


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_generated_requests_never_break_the_api(api, engine, mode) -> None:
    api.save_flow("id: fuzz/hello\nsteps:\n  - {id: hi, bash: echo hi}\n")
    headers = {"Authorization": f"Bearer {create_token(engine, f'fuzz-{mode.value}', Role.ADMIN)}"}
    document = api.client.get("/api/v1/openapi.json", headers=headers).json
    schema = schemathesis.openapi.from_dict(document)
    schema.app = api.client.application
    failures = {}
    operations = [op for result in schema.get_all_operations() if (op := result.ok()).label not in SKIPPED]
    assert len(operations) >= 30

    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            # A document can fit the JSON Schema and still be refused for what the schema cannot
            # say (a reference to a step that has not run, a negative duration): 422, not a bug.
            try:
                case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
            except FailureGroup as group:
                if any(not _vanished(failure) for failure in group.exceptions):
                    raise

        try:
            check()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE, operation.label  # nothing to make invalid
        except BaseException as exc:  # every operation is tried; all failures are shown
            if mode == GenerationMode.NEGATIVE and "Cannot generate an array with" in str(exc):
                continue  # schemathesis could not build an invalid array here: its limit, not the API's
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    # the fuzzer's token still works: every request above was checked, not refused
    assert api.client.get("/api/v1/flows", headers=headers).status_code == 200
