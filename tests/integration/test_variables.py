"""Variables and secrets reach steps through expressions; secrets never come back out."""
from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from orchestrator.errors import ExpressionError
from orchestrator.store.access import Role, create_token
from orchestrator.store.variables import mask, resolve, set_variable

pytestmark = pytest.mark.integration

KEYS = ("zT5cQ2H3uJ8GZbqL9cW1mA4vN7xY0kE6rP2sD5fG8hI=",)


def test_a_secret_reaches_the_step_and_is_masked_in_logs_and_result(engine, run_flow) -> None:
    set_variable(engine, "api_password", "hunter2-very-secret", secret=True, keys=KEYS, actor="test")
    set_variable(engine, "region", "eu-west", secret=False, keys=KEYS, actor="test")
    run = run_flow("""
id: test/secrets
steps:
  - id: use
    bash: |
      echo "connecting to $REGION with $PASSWORD" >&2
      echo "{\\"len\\": ${#PASSWORD}, \\"echo\\": \\"$PASSWORD\\"}"
    with: {PASSWORD: "${{ secrets.api_password }}", REGION: "${{ vars.region }}"}
""")
    assert run.status == "succeeded", run.error
    step = run.steps[0]
    assert step.result == {"len": 19, "echo": "***"}
    assert "connecting to eu-west with ***" in step.logs and "hunter2" not in step.logs


def test_a_missing_secret_fails_the_step_clearly(run_flow) -> None:
    run = run_flow("id: test/nosecret\nsteps:\n  - id: use\n    bash: echo $X\n"
                   "    with: {X: \"${{ secrets.never_set }}\"}\n")
    assert run.status == "failed"
    assert "secret 'never_set' is not defined" in run.steps[0].error


def test_keys_rotate_old_secrets_still_decrypt(engine) -> None:
    new_key = Fernet.generate_key().decode()
    set_variable(engine, "rotated", {"token": "abc123"}, secret=True, keys=KEYS, actor="test")
    _, secrets = resolve(engine, (new_key, *KEYS), frozenset(), frozenset({"rotated"}))
    assert secrets == {"rotated": {"token": "abc123"}}
    with pytest.raises(ExpressionError, match="cannot be decrypted"):
        resolve(engine, (new_key,), frozenset(), frozenset({"rotated"}))


def test_masking_reaches_into_nested_values() -> None:
    assert mask({"a": ["x-s3cret-y", 5]}, {"k": "s3cret"}) == {"a": ["x-***-y", 5]}


def test_the_api_never_returns_a_secret_value(engine) -> None:
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    client = create_app(load_settings(), engine, send, revoke).test_client()
    developer = {"Authorization": f"Bearer {create_token(engine, 'vars-dev', Role.DEVELOPER)}"}
    operator = {"Authorization": f"Bearer {create_token(engine, 'vars-op', Role.OPERATOR)}"}
    assert client.put("/api/v1/variables/db_pass", json={"value": "pa55word", "secret": True},
                      headers=developer).status_code == 204
    assert client.put("/api/v1/variables/db_host", json={"value": "db.local"}, headers=developer).status_code == 204
    assert client.put("/api/v1/variables/x", json={"value": 1}, headers=operator).status_code == 403
    listed = client.get("/api/v1/variables", headers=operator).json["items"]
    by_name = {v["name"]: v for v in listed}
    assert by_name["db_host"]["value"] == "db.local"
    assert "value" not in by_name["db_pass"] and by_name["db_pass"]["secret"] is True
    assert "pa55word" not in client.get("/api/v1/variables/db_pass", headers=developer).get_data(as_text=True)
    bad = client.put("/api/v1/variables/bad-name", json={"value": 1}, headers=developer)
    assert bad.status_code == 422
    assert client.put("/api/v1/variables/y", json={"value": 1, "colour": "red"},
                      headers=developer).json["errors"][0]["path"] == "colour"
    assert client.delete("/api/v1/variables/db_host", headers=developer).status_code == 204
    assert client.get("/api/v1/variables/db_host", headers=developer).status_code == 404


CANARY_FLOW = """
id: test/canary
inputs:
  n: {type: integer, default: 1}
steps:
  - id: keyed
    python: |
      def main(s: str):
          print("the secret is", s)
          return {s: 1, "plain": [s]}
    with: {s: "${{ secrets.canary }}"}
  - id: bad_with
    bash: echo never
    with: {X: "${{ inputs[secrets.canary] }}"}
    continue_on_error: true
  - id: bad_if
    if: "${{ inputs[secrets.canary] }}"
    bash: echo never
    continue_on_error: true
  - id: thrown
    python: |
      def main(s: str):
          raise RuntimeError("leaked " + s)
    with: {s: "${{ secrets.canary }}"}
"""


def test_a_canary_secret_is_never_written_in_clear(engine, run_flow, worker) -> None:
    """A secret as a dict key, inside failing `with:` and `if:` expressions, in an exception
    and in stdout: not in any table, not in the API's answer, not in the worker's log."""
    import uuid

    from sqlalchemy import text

    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    canary = "canary-" + uuid.uuid4().hex
    set_variable(engine, "canary", canary, secret=True, keys=KEYS, actor="test")
    run = run_flow(CANARY_FLOW)
    assert run.status == "failed"
    by_path = {s.path: s for s in run.steps}
    assert by_path["keyed"].result == {"***": 1, "plain": ["***"]} and "the secret is ***" in by_path["keyed"].logs
    assert by_path["bad_with"].status == "failed" and "***" in by_path["bad_with"].error
    assert by_path["bad_if"].status == "failed" and "***" in by_path["bad_if"].error
    assert "leaked ***" in by_path["thrown"].error and "leaked ***" in run.error
    with engine.connect() as conn:
        for table in ("runs", "step_runs", "audit_events"):
            found = conn.execute(text(f"SELECT count(*) FROM {table} t WHERE t::text LIKE :c"),  # noqa: S608
                                 {"c": f"%{canary}%"}).scalar()
            assert found == 0, f"the secret is in {table}"
    client = create_app(load_settings(), engine, send, revoke).test_client()
    token = create_token(engine, "canary-reader", Role.VIEWER)
    answer = client.get(f"/api/v1/runs/{run.id}", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and canary not in answer.get_data(as_text=True)
    assert canary not in worker.log_path.read_text()


def test_a_token_saves_only_flows_reading_the_secrets_its_scope_allows(engine) -> None:
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    client = create_app(load_settings(), engine, send, revoke).test_client()
    admin = {"Authorization": f"Bearer {create_token(engine, 'scope-admin', Role.ADMIN)}"}
    made = client.post("/api/v1/tokens", json={"name": "team-dev", "role": "developer", "secrets": ["team_*"]},
                       headers=admin)
    assert made.status_code == 201 and made.json["secrets"] == ["team_*"]
    team = {"Authorization": f"Bearer {made.json['token']}", "Content-Type": "application/yaml"}
    ours = "id: scope/ours\nsteps:\n  - {id: a, bash: echo, with: {P: \"${{ secrets.team_db }}\"}}\n"
    assert client.put("/api/v1/flows/scope/ours", data=ours, headers=team).status_code == 201
    theirs = ("id: scope/theirs\nsteps:\n  - {id: a, bash: echo}\n"
              "  - {id: pay, sql: select 1, database: payroll}\n")
    refused = client.put("/api/v1/flows/scope/theirs", data=theirs, headers=team)
    assert refused.status_code == 403 and "'payroll' (step pay)" in refused.json["detail"]
    assert client.get("/api/v1/flows/scope/theirs", headers=team).status_code == 404  # nothing stored
    listed, cursor = {}, ""
    while cursor is not None:  # every page of the token list
        page = client.get(f"/api/v1/tokens?limit=20&cursor={cursor}", headers=admin).json
        listed.update({t["name"]: t["secrets"] for t in page["items"]})
        cursor = page["next_cursor"]
    assert listed["team-dev"] == ["team_*"] and listed["scope-admin"] == ["*"]
