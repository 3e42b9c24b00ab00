"""Flows that run by themselves, over HTTP: schedules through the API, webhooks, flow
triggers, and concurrency limits held across the workers."""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import time

import pytest

from orchestrator.store.access import Role

pytestmark = pytest.mark.integration

ECHO = "id: {id}\ninputs:\n  who: {{type: string, default: nobody}}\nsteps:\n" \
       "  - {{id: hello, bash: 'echo \"hello $W\"', with: {{W: '${{{{ inputs.who }}}}'}}}}\n"


def test_schedules_through_the_api(api) -> None:
    api.save_flow(ECHO.format(id="trig/sched"))
    made = api.post("/api/v1/schedules", role=Role.DEVELOPER, json={
        "flow": "trig/sched", "cron": "30 2 * * *", "timezone": "America/New_York",
        "inputs": {"who": "cron"}, "overlap": "skip"})
    assert made.status_code == 201, made.json
    schedule_id = made.json["id"]
    assert len(made.json["next"]) == 5 and all(t.endswith(("06:30:00Z", "07:30:00Z"))
                                               for t in made.json["next"])
    upcoming = api.get(f"/api/v1/schedules/{schedule_id}?next=3").json["next"]
    assert len(upcoming) == 3 and upcoming == sorted(upcoming)
    paused = api.call("PATCH", f"/api/v1/schedules/{schedule_id}", Role.DEVELOPER,
                      json={"paused_until": "2030-01-01T00:00:00+00:00"})
    assert paused.status_code == 200 and paused.json["paused_until"].startswith("2030-01-01")
    listed = api.get("/api/v1/schedules?flow=trig/sched").json["items"]
    assert [s["id"] for s in listed] == [schedule_id]
    # a backfill runs each slot of the range once; a second backfill finds them done
    body = {"start": "2026-11-01T00:00:00+00:00", "end": "2026-11-03T23:59:00+00:00"}
    first = api.post(f"/api/v1/schedules/{schedule_id}/backfill", json=body)
    assert first.status_code == 202 and len(first.json["started"]) == 3
    again = api.post(f"/api/v1/schedules/{schedule_id}/backfill", json=body)
    assert again.json["started"] == [] and again.json["already_done"] == 3
    for run_id in first.json["started"]:
        assert api.finished_run(run_id)["result"] == "hello cron"
    fired = api.get(f"/api/v1/schedules/{schedule_id}/fires").json["items"]
    assert [f["status"] for f in fired] == ["started"] * 3
    assert api.delete(f"/api/v1/schedules/{schedule_id}").status_code == 204
    assert api.get(f"/api/v1/schedules/{schedule_id}").status_code == 404


@pytest.mark.parametrize(("body", "path"), [
    ({"flow": "trig/sched", "cron": "every hour"}, "cron"),
    ({"flow": "trig/sched", "cron": "0 * * * *", "timezone": "Moon/Base"}, "timezone"),
    ({"flow": "trig/nowhere", "cron": "0 * * * *"}, "flow"),
    ({"flow": "trig/sched", "cron": "0 * * * *", "inputs": {"who": 3}}, "inputs.who"),
    ({"flow": "trig/sched", "cron": "0 * * * *", "overlap": "sometimes"}, "overlap"),
    ({"flow": "trig/sched", "cron": "0 * * * *", "paused_until": "tomorrow"}, "paused_until"),
])
def test_a_bad_schedule_is_refused_naming_the_field(api, body, path) -> None:
    api.save_flow(ECHO.format(id="trig/sched"))
    refused = api.post("/api/v1/schedules", role=Role.DEVELOPER, json=body)
    assert refused.status_code == 422, refused.json
    assert path in [e["path"] for e in refused.json["errors"]]


def test_a_declared_schedule_changes_in_its_flow_not_through_the_api(api) -> None:
    api.save_flow(ECHO.format(id="trig/declared") + "triggers:\n  - {id: hourly, cron: '@hourly'}\n")
    declared = api.get("/api/v1/schedules?flow=trig/declared").json["items"][0]
    assert declared["declared_in_flow"] and declared["trigger"] == "hourly"
    refused = api.call("PATCH", f"/api/v1/schedules/{declared['id']}", Role.DEVELOPER, json={"cron": "@daily"})
    assert refused.status_code == 422 and refused.json["errors"][0]["path"] == "cron"
    paused = api.call("PATCH", f"/api/v1/schedules/{declared['id']}", Role.DEVELOPER, json={"enabled": False})
    assert paused.status_code == 200 and paused.json["enabled"] is False


def test_a_webhook_runs_its_flow_with_the_right_token_only(api, engine) -> None:
    api.save_flow(ECHO.format(id="trig/hooked"))
    enabled = api.put("/api/v1/flows/trig/hooked/webhook")
    assert enabled.status_code == 201 and enabled.json["url"].endswith("/api/v1/hooks/trig/hooked")
    token = enabled.json["token"]
    runs_before = api.get("/api/v1/runs?flow=trig/hooked").json["items"]
    for wrong in ({"Authorization": "Bearer mh_wrong"}, {"Authorization": f"Bearer {api.tokens[Role.ADMIN]}"}, {}):
        refused = api.client.post("/api/v1/hooks/trig/hooked", json={"who": "mallory"}, headers=wrong)
        assert refused.status_code == 401, refused.json
    assert api.get("/api/v1/runs?flow=trig/hooked").json["items"] == runs_before  # nothing started
    done = api.client.post("/api/v1/hooks/trig/hooked?wait=60", json={"who": "hook"},
                           headers={"Authorization": f"Bearer {token}"})
    assert done.status_code == 200 and done.json["result"] == "hello hook" and done.json["trigger"] == "webhook"
    in_url = api.client.post(f"/api/v1/hooks/trig/hooked?token={token}", json={"who": "url"})
    assert in_url.status_code == 422 and in_url.json["errors"][0]["path"] == "token"  # URLs get logged
    queued = api.client.post("/api/v1/hooks/trig/hooked", json={"who": "async"}, headers={"X-Millrace-Token": token})
    assert queued.status_code == 202 and api.finished_run(queued.json["id"])["result"] == "hello async"
    bad = api.client.post("/api/v1/hooks/trig/hooked", json={"who": 5}, headers={"X-Millrace-Token": token})
    assert bad.status_code == 422 and bad.json["errors"][0]["path"] == "inputs.who"
    rotated = api.put("/api/v1/flows/trig/hooked/webhook").json["token"]
    assert api.client.post("/api/v1/hooks/trig/hooked", json={},
                           headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert api.delete("/api/v1/flows/trig/hooked/webhook").status_code == 204
    assert api.client.post("/api/v1/hooks/trig/hooked", json={},
                           headers={"Authorization": f"Bearer {rotated}"}).status_code == 401


def test_a_flow_trigger_runs_a_flow_when_another_ends_with_its_result(api) -> None:
    api.save_flow('id: trig/upstream\nsteps:\n  - {id: make, python: "def main():\\n    return {\\"rows\\": 42}"}\n')
    api.save_flow("id: trig/downstream\ninputs:\n  rows: {type: integer}\n  from_run: {type: string}\n"
                  "triggers:\n  - id: after_upstream\n    flow: trig/upstream\n"
                  "    inputs: {rows: '${{ trigger.result.rows }}', from_run: '${{ trigger.run_id }}'}\n"
                  "steps:\n  - {id: use, python: \"def main(rows: int) -> int:\\n    return rows + 1\","
                  " with: {rows: '${{ inputs.rows }}'}}\n")
    upstream = api.post("/api/v1/flows/trig/upstream/runs?wait=60", json={}).json
    assert upstream["status"] == "succeeded"
    deadline = time.monotonic() + 60
    while not (found := api.get("/api/v1/runs?flow=trig/downstream").json["items"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert len(found) == 1 and found[0]["trigger"] == "flow:trig/upstream"
    downstream = api.finished_run(found[0]["id"])
    assert downstream["result"] == 43 and downstream["inputs"]["from_run"] == upstream["id"]


@pytest.mark.parametrize("on_limit", ["queue", "fail"])
def test_a_concurrency_limit_of_one_holds_across_workers(api, engine, on_limit) -> None:
    flow_id = f"trig/limited_{on_limit}"
    api.save_flow(f"id: {flow_id}\nconcurrency: {{limit: 1, on_limit: {on_limit}}}\n"
                  "steps:\n  - {id: work, bash: 'sleep 0.3; echo done'}\n")

    def start(_: int):
        return api.post(f"/api/v1/flows/{flow_id}/runs", json={})

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(start, range(10)))
    accepted = [a.json["id"] for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 409]
    if on_limit == "fail":
        assert len(accepted) == 1 and len(refused) == 9
        assert "concurrency limit" in refused[0].json["detail"]
    else:
        assert len(accepted) == 10 and not refused
    finished = [api.finished_run(run_id, timeout=120) for run_id in accepted]
    assert all(run["status"] == "succeeded" for run in finished)
    spans = sorted((dt.datetime.fromisoformat(r["started_at"]), dt.datetime.fromisoformat(r["finished_at"]))
                   for r in finished)
    assert all(earlier_end <= later_start for (_, earlier_end), (later_start, _) in zip(spans, spans[1:], strict=False))


def test_a_run_waiting_for_approval_holds_its_slot_and_cancel_mode_ends_the_others(api) -> None:
    api.save_flow("id: trig/gate_limited\nconcurrency: {limit: 1, key: '${{ inputs.customer }}', on_limit: cancel}\n"
                  "inputs:\n  customer: {type: string}\n"
                  "steps:\n  - {id: gate, approval: {}}\n  - {id: done, bash: echo done}\n")
    first = api.post("/api/v1/flows/trig/gate_limited/runs", json={"inputs": {"customer": "acme"}}).json["id"]
    deadline = time.monotonic() + 60
    while not any(s["status"] == "waiting" for s in api.get(f"/api/v1/runs/{first}").json["steps"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = api.post("/api/v1/flows/trig/gate_limited/runs", json={"inputs": {"customer": "acme"}}).json
    assert second["status"] == "cancelled"  # the waiting run holds acme's only slot
    assert "concurrency limit 1 reached" in api.get(f"/api/v1/runs/{second['id']}").json["error"]
    other = api.post("/api/v1/flows/trig/gate_limited/runs", json={"inputs": {"customer": "globex"}}).json
    assert other["status"] != "cancelled"  # another key, another slot
    api.approve_when_waiting(first, "gate")
    assert api.finished_run(first)["status"] == "succeeded"
    third = api.post("/api/v1/flows/trig/gate_limited/runs", json={"inputs": {"customer": "acme"}}).json
    assert third["status"] != "cancelled"  # the slot is free again
    api.post(f"/api/v1/runs/{third['id']}/cancel", json={})
    api.post(f"/api/v1/runs/{other['id']}/cancel", json={})


def test_a_retry_with_the_same_idempotency_key_finds_its_run_even_at_the_limit(api) -> None:
    api.save_flow("id: trig/idem_limited\nconcurrency: {limit: 1, on_limit: fail}\n"
                  "steps:\n  - {id: gate, approval: {}}\n")
    headers = {"Idempotency-Key": "order-42"}
    first = api.post("/api/v1/flows/trig/idem_limited/runs", json={}, headers=headers)
    again = api.post("/api/v1/flows/trig/idem_limited/runs", json={}, headers=headers)
    assert first.status_code == 202 and again.status_code == 202 and again.json["id"] == first.json["id"]
    other = api.post("/api/v1/flows/trig/idem_limited/runs", json={}, headers={"Idempotency-Key": "order-43"})
    assert other.status_code == 409  # a new run still meets the limit
    api.post(f"/api/v1/runs/{first.json['id']}/cancel", json={})
