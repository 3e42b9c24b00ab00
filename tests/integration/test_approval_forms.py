"""Approval steps with a form, an approvers rule, self_approval, on_timeout, and the signed
links a notification carries: through the API and the link pages, on a real worker."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from orchestrator.store.access import Role, create_token

FORM_FLOW = """
id: test/approval_form
steps:
  - id: review
    approval:
      description: Ship it?
      form:
        amount: {type: integer, required: true, description: how many}
        tier: {type: enum, enum: [gold, silver], default: silver}
        fast: {type: boolean, default: false}
  - id: after
    python: |
      def main(review: dict) -> str:
          return f"{type(review['amount']).__name__}:{review['amount'] * 2}:{review['tier']}:{review['fast']}"
    with: {review: "${{ steps.review.result }}"}
"""

RULED_FLOW = """
id: test/approval_ruled
steps:
  - id: review
    approval:
      approvers: {tokens: [release-manager]}
      self_approval: false
  - id: after
    python: "def main() -> str:\\n    return 'shipped'"
"""

SELF_FLOW = """
id: test/approval_self
steps:
  - id: review
    approval: {self_approval: false}
"""

TIMEOUT_FLOW = """
id: test/approval_timeout_{on}
steps:
  - id: review
    approval:
      timeout: 1s
      on_timeout: {on}
      form:
        amount: {{type: integer, default: 5}}
  - id: after
    python: "def main(n: int) -> int:\\n    return n + 1"
    with: {{n: "${{{{ steps.review.result.amount }}}}"}}
"""

LINKED_FLOW = """
id: test/approval_linked
steps:
  - id: review
    approval:
      approvers: {roles: [operator]}
      form:
        amount: {type: integer, required: true}
  - id: after
    python: "def main(n: int) -> str:\\n    return f'{type(n).__name__} {n}'"
    with: {n: "${{ steps.review.result.amount }}"}
"""


def _start(api, flow_id: str, role: Role = Role.OPERATOR) -> str:
    started = api.post(f"/api/v1/flows/{flow_id}/runs", role, json={})
    assert started.status_code == 202, started.json
    return started.json["id"]


def _waiting(api, run_id: str, step: str = "review", timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/api/v1/runs/{run_id}").json
        if any(s["path"] == step and s["status"] == "waiting" for s in run["steps"]):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


def _step(run: dict, path: str) -> dict:
    return [s for s in run["steps"] if s["path"] == path][-1]


def test_a_form_refuses_wrong_values_and_its_typed_values_become_the_result(api) -> None:
    api.save_flow(FORM_FLOW)
    run_id = _start(api, "test/approval_form")
    _waiting(api, run_id)
    approve = f"/api/v1/runs/{run_id}/steps/review/approve"

    wrong = api.post(approve, json={"values": {"amount": "12", "colour": "red"}})
    assert wrong.status_code == 422, wrong.json
    assert {e["path"] for e in wrong.json["errors"]} == {"values.amount", "values.colour"}
    assert "integer" in {e["path"]: e["message"] for e in wrong.json["errors"]}["values.amount"]
    missing = api.post(approve, json={"values": {"tier": "gold"}})
    assert missing.status_code == 422 and missing.json["errors"][0]["path"] == "values.amount"
    bad_choice = api.post(approve, json={"values": {"amount": 1, "tier": "bronze"}})
    assert bad_choice.status_code == 422 and bad_choice.json["errors"][0]["path"] == "values.tier"
    assert _step(api.get(f"/api/v1/runs/{run_id}").json, "review")["status"] == "waiting"  # nothing recorded

    right = api.post(approve, json={"values": {"amount": 12, "tier": "gold"}, "reason": "ok"})
    assert right.status_code == 200, right.json
    assert right.json["result"] == {"amount": 12, "tier": "gold", "fast": False}
    run = api.finished_run(run_id)
    assert run["status"] == "succeeded", run
    assert _step(run, "review")["result"] == {"amount": 12, "tier": "gold", "fast": False}
    assert run["result"] == "int:24:gold:False"  # the next step read an int


def test_a_form_that_cannot_hold_is_refused_when_saved_with_its_path(api) -> None:
    bad = """
id: test/approval_bad
steps:
  - id: review
    approval:
      on_timeout: approve
      form:
        amount: {type: integer, default: many}
        tier: {type: enum}
      approvers: {roles: [operater]}
"""
    saved = api.put("/api/v1/flows/test/approval_bad", data=bad, headers={"Content-Type": "application/yaml"})
    assert saved.status_code == 422
    paths = {e["path"]: e["message"] for e in saved.json["errors"]}
    assert "expected an integer" in paths["steps[0].approval.form.amount"]
    assert "enum" in paths["steps[0].approval.form.tier"]
    assert "did you mean 'operator'" in paths["steps[0].approval.approvers.roles[0]"]


def test_only_an_approver_the_rule_names_may_decide(api, engine) -> None:
    api.save_flow(RULED_FLOW)
    manager = create_token(engine, "release-manager", Role.OPERATOR)
    run_id = _start(api, "test/approval_ruled")
    _waiting(api, run_id)

    refused = api.post(f"/api/v1/runs/{run_id}/steps/review/approve", json={})
    assert refused.status_code == 403
    assert "token release-manager" in refused.json["detail"]
    assert api.post(f"/api/v1/runs/{run_id}/steps/review/reject", Role.ADMIN, json={}).status_code == 403
    assert _step(api.get(f"/api/v1/runs/{run_id}").json, "review")["status"] == "waiting"

    approved = api.client.post(f"/api/v1/runs/{run_id}/steps/review/approve", json={},
                               headers={"Authorization": f"Bearer {manager}"})
    assert approved.status_code == 200, approved.json
    assert api.finished_run(run_id)["result"] == "shipped"


def test_with_self_approval_false_who_started_the_run_may_not_approve_it(api) -> None:
    api.save_flow(SELF_FLOW)
    run_id = _start(api, "test/approval_self", Role.OPERATOR)
    _waiting(api, run_id)
    refused = api.post(f"/api/v1/runs/{run_id}/steps/review/approve", Role.OPERATOR, json={})
    assert refused.status_code == 403 and "self_approval" in refused.json["detail"]
    assert api.post(f"/api/v1/runs/{run_id}/steps/review/approve", Role.ADMIN, json={}).status_code == 200
    assert api.finished_run(run_id)["status"] == "succeeded"


@pytest.mark.parametrize("on", ["approve", "reject"])
def test_a_timeout_approves_with_the_defaults_or_fails_saying_so(api, on: str) -> None:
    api.save_flow(TIMEOUT_FLOW.format(on=on))
    run_id = _start(api, f"test/approval_timeout_{on}")
    run = api.finished_run(run_id, timeout=90)  # the worker's sweeper decides it, within its interval
    review = _step(run, "review")
    if on == "approve":
        assert run["status"] == "succeeded", run
        assert review["result"] == {"amount": 5}
        assert run["result"] == 6
    else:
        assert run["status"] == "failed", run
        assert review["status"] == "failed" and review["error"] == "approval timed out after 1s"


def _links(api, run_id: str, role: Role = Role.OPERATOR, **params: str) -> dict:
    listed = api.get(f"/api/v1/runs/{run_id}/approvals", role, query_string=params)
    assert listed.status_code == 200, listed.json
    (item,) = listed.json["items"]
    return item


def test_a_signed_resume_link_decides_once_with_its_form(api) -> None:
    api.save_flow(LINKED_FLOW)
    run_id = _start(api, "test/approval_linked")
    _waiting(api, run_id)
    item = _links(api, run_id)
    assert item["form"]["amount"]["type"] == "integer" and item["approvers"] == {"roles": ["operator"], "tokens": []}
    links = item["links"]
    assert links["approver"].startswith("token:")
    path = links["resume"].split("://", 1)[1].split("/", 1)[1]

    page = api.client.get(f"/{path}")
    assert page.status_code == 200 and 'name="amount"' in page.text
    assert page.headers["Referrer-Policy"] == "same-origin"
    wrong = api.client.post(f"/{path}", data={"decision": "approve", "amount": "seven"})
    assert wrong.status_code == 422 and "amount" in wrong.text  # refused, the link still unused
    done = api.client.post(f"/{path}", data={"decision": "approve", "amount": "7"})
    assert done.status_code == 200 and "approved" in done.text
    again = api.client.post(f"/{path}", data={"decision": "approve", "amount": "8"})
    assert again.status_code == 410 and "used already" in again.text
    assert api.client.get(f"/{path}").status_code == 410

    run = api.finished_run(run_id)
    assert run["status"] == "succeeded" and run["result"] == "int 7"


def test_expired_tampered_and_unallowed_links_are_refused_and_a_cancel_link_cancels(api, engine) -> None:
    from config.settings import load_settings
    from orchestrator.services import links
    from orchestrator.store import approvals

    api.save_flow(LINKED_FLOW)
    run_id = _start(api, "test/approval_linked")
    _waiting(api, run_id)
    keys = load_settings().secret_keys
    attempt = approvals.waiting_approval(engine, run_id, "review")

    past = int((dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).timestamp())
    expired = links.sign(keys, links.Claims(attempt.id, run_id, "resume", "role:operator", past))
    answer = api.client.post(f"/approvals/{expired}", data={"decision": "approve", "amount": "1"})
    assert answer.status_code == 410 and "expired" in answer.text

    item = _links(api, run_id, Role.ADMIN, approver="role:operator")
    resume = item["links"]["resume"].rsplit("/", 1)[1]
    claims, signature = resume.split(".")
    forged = links.sign(("not-our-key",), links.Claims(attempt.id, run_id, "resume", "role:admin", 2**31))
    for tampered in (claims[:-2] + ("A" if claims[-2] != "A" else "B") + claims[-1] + "." + signature, forged):
        refused = api.client.post(f"/approvals/{tampered}", data={"decision": "approve", "amount": "1"})
        assert refused.status_code == 403 and "not valid" in refused.text

    # links are issued only for an approver the rule allows, and only an admin gets others' links
    assert api.get(f"/api/v1/runs/{run_id}/approvals", Role.ADMIN,
                   query_string={"approver": "role:viewer"}).status_code == 403
    assert api.get(f"/api/v1/runs/{run_id}/approvals", Role.OPERATOR,
                   query_string={"approver": "role:admin"}).status_code == 403
    assert _links(api, run_id, Role.DEVELOPER)["links"] is None  # a developer's token is not an approver here
    assert _step(api.get(f"/api/v1/runs/{run_id}").json, "review")["status"] == "waiting"

    cancel = item["links"]["cancel"].rsplit("/", 1)[1]
    assert api.client.post(f"/approvals/{cancel}", data={"decision": "cancel"}).status_code == 200
    assert api.finished_run(run_id)["status"] == "cancelled"


def test_the_command_line_approves_with_form_values(api) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    def millrace(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT, env=dict(os.environ),
                              capture_output=True, text=True, timeout=120)

    api.save_flow(LINKED_FLOW)
    run_id = _start(api, "test/approval_linked")
    _waiting(api, run_id)
    wrong = millrace("approve", run_id, "review", "--value", "amount=three")
    assert wrong.returncode == 2 and "values.amount" in wrong.stderr, wrong.stderr
    right = millrace("approve", run_id, "review", "-v", "amount=3")
    assert right.returncode == 0 and right.stdout.strip() == "approved", right.stderr
    assert api.finished_run(run_id)["result"] == "int 3"
