"""Finding runs: labels from the flow, the start, a step's result and a parent run; searching by
label, input value and time; debounced starts that are one run; priorities that overtake."""
from __future__ import annotations

import datetime as dt
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator.store.access import Role

pytestmark = pytest.mark.integration
# RabbitMQ 3.10's quorum queues have no priorities (MILLRACE_TEST_QUEUE_TYPE=quorum)
classic_queues = pytest.mark.skipif(os.environ.get("MILLRACE_QUEUE_TYPE") == "quorum",
                                    reason="priorities are a classic-queue feature")

CHILD = """id: labels/child
labels: {kind: child}
steps:
  - id: hello
    python: "def main():\\n    return 'hi'"
"""
PARENT = """id: labels/parent
labels: {team: billing, env: dev}
steps:
  - id: count
    python: "def main():\\n    return {'count': 3}"
    labels: {rows: "${{ result.count }}"}
  - id: child
    flow: labels/child
"""
CUSTOMERS = """id: labels/customers
inputs:
  customer: {type: integer}
steps:
  - id: echo
    python: "def main(c: int) -> int:\\n    return c"
    with: {c: "${{ inputs.customer }}"}
"""
DEBOUNCED = """id: labels/debounced
inputs:
  n: {type: integer}
concurrency: {debounce: 2s}
steps:
  - id: echo
    python: "def main(n: int) -> int:\\n    return n"
    with: {n: "${{ inputs.n }}"}
"""


def _runs(api, query: str) -> list[dict]:
    answer = api.get(f"/api/v1/runs?{query}&limit=200")
    assert answer.status_code == 200, answer.json
    return answer.json["items"]


def test_a_run_carries_its_flows_its_starts_its_steps_and_its_parents_labels(api) -> None:
    api.save_flow(CHILD)
    api.save_flow(PARENT)
    started = api.post("/api/v1/flows/labels/parent/runs", json={"labels": {"env": "prod"}})
    assert started.status_code == 202, started.json
    run = api.finished_run(started.json["id"])
    assert run["status"] == "succeeded", run
    # the step's result stays its result; the label is a string
    assert run["labels"] == {"team": "billing", "env": "prod", "rows": "3"}
    assert next(s for s in run["steps"] if s["path"] == "count")["result"] == {"count": 3}
    [child] = _runs(api, "flow=labels/child")
    assert child["labels"] == {"kind": "child", "team": "billing", "env": "prod", "rows": "3"}

    both = {r["id"] for r in _runs(api, "label=team:billing&label=env:prod")}
    assert both == {run["id"], child["id"]}
    assert _runs(api, "label=team:billing&label=env:dev") == []
    assert [r["id"] for r in _runs(api, "label=rows:3&flow=labels/parent")] == [run["id"]]


def test_a_bad_label_filter_and_a_label_on_a_waiting_step_are_refused_with_their_path(api) -> None:
    refused = api.get("/api/v1/runs?label=nocolon")
    assert refused.status_code == 422
    assert refused.json["errors"][0]["path"] == "label[0]"
    gated = "id: labels/gated\nsteps:\n  - id: gate\n    approval: {}\n    labels: {who: x}\n"
    saved = api.put("/api/v1/flows/labels/gated", data=gated, headers={"Content-Type": "application/yaml"})
    assert saved.status_code == 422
    assert saved.json["errors"][0]["path"] == "steps[0].labels"


def test_runs_are_found_by_input_value_and_time_range(api) -> None:
    api.save_flow(CUSTOMERS)
    before = dt.datetime.now(dt.UTC)
    ids = {}
    for customer in (42, 7, 42):
        started = api.post("/api/v1/flows/labels/customers/runs", json={"inputs": {"customer": customer}})
        ids.setdefault(customer, []).append(started.json["id"])
    after = dt.datetime.now(dt.UTC)
    for run_id in ids[42] + ids[7]:
        api.finished_run(run_id)
    found = [r["id"] for r in _runs(api, "flow=labels/customers&inputs.customer=42")]
    assert found == ids[42][::-1]  # newest first
    assert [r["id"] for r in _runs(api, 'inputs.customer="7"')] == []  # a JSON string is only that string
    stamp = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    window = _runs(api, f"flow=labels/customers&since={stamp(before)}&until={stamp(after)}")
    assert {r["id"] for r in window} == set(ids[42] + ids[7])
    assert _runs(api, f"flow=labels/customers&until={stamp(before)}") == []
    # keyset paging goes on under a filter
    first = api.get("/api/v1/runs?flow=labels/customers&inputs.customer=42&limit=1").json
    second = api.get(f"/api/v1/runs?flow=labels/customers&inputs.customer=42&limit=1&cursor={first['next_cursor']}")
    assert [first["items"][0]["id"], second.json["items"][0]["id"]] == ids[42][::-1]


def test_ten_starts_within_the_debounce_window_are_one_run_with_the_last_inputs(api) -> None:
    api.save_flow(DEBOUNCED)
    began = time.monotonic()

    def start(n: int) -> str:
        answer = api.post("/api/v1/flows/labels/debounced/runs", json={"inputs": {"n": n}})
        assert answer.status_code == 202, answer.json
        return answer.json["id"]

    with ThreadPoolExecutor(9) as pool:  # nine at once: they race for the window
        ids = list(pool.map(start, range(9)))
    ids.append(start(99))  # the last one
    assert time.monotonic() - began < 1.0
    assert len(set(ids)) == 1
    run = api.finished_run(ids[0], timeout=60)
    assert run["status"] == "succeeded" and run["inputs"] == {"n": 99} and run["result"] == 99
    # it started at the window's end, not before
    created, started = (dt.datetime.fromisoformat(run[k]) for k in ("created_at", "started_at"))
    assert (started - created).total_seconds() >= 2.0
    assert dt.datetime.fromisoformat(run["debounce_until"]) <= started
    assert [r["id"] for r in _runs(api, "flow=labels/debounced")] == [ids[0]]
    # a start after the window is a run of its own
    assert start(5) != ids[0]


@classic_queues
def test_a_higher_priority_run_overtakes_queued_lower_ones_on_a_busy_worker(api, engine) -> None:
    from tests.conftest import QUEUE, Worker

    queue = f"{QUEUE}_prio"
    slow = f"id: labels/slow\nsteps:\n  - id: hold\n    queue: {queue}\n    python: \"import time\\n" \
           f"def main():\\n    time.sleep(5)\\n    return 1\"\n"
    quick = f"id: labels/quick\nsteps:\n  - id: go\n    queue: {queue}\n    python: \"def main():\\n    return 1\"\n"
    api.save_flow(slow)
    api.save_flow(quick)
    worker = Worker([queue], concurrency=1)
    try:
        blocker = api.post("/api/v1/flows/labels/slow/runs", json={}).json["id"]
        deadline = time.monotonic() + 30
        while api.get(f"/api/v1/runs/{blocker}").json["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        low = [api.post("/api/v1/flows/labels/quick/runs", json={"priority": 1}).json["id"] for _ in range(3)]
        high = api.post("/api/v1/flows/labels/quick/runs", json={"priority": 9}).json["id"]
        ended = {run_id: api.finished_run(run_id, timeout=90) for run_id in [blocker, *low, high]}
    finally:
        worker.stop()
    assert all(r["status"] == "succeeded" for r in ended.values()), ended
    assert ended[high]["priority"] == 9
    started = {run_id: dt.datetime.fromisoformat(r["started_at"]) for run_id, r in ended.items()}
    assert all(started[high] < started[run_id] for run_id in low), started


def test_a_schedule_and_a_webhook_label_the_runs_they_start(api, engine) -> None:
    from orchestrator.services.scheduling import ScheduleSpec, create_schedule, fire_due

    api.save_flow(CUSTOMERS)
    made = api.put("/api/v1/flows/labels/customers/webhook", json={"labels": {"source": "crm"}}, role=Role.DEVELOPER)
    assert made.status_code == 201, made.json
    hooked = api.client.post("/api/v1/hooks/labels/customers", json={"customer": 1},
                             headers={"Authorization": f"Bearer {made.json['token']}"})
    assert hooked.status_code == 202, hooked.json
    assert api.get(f"/api/v1/runs/{hooked.json['id']}").json["labels"] == {"source": "crm"}

    schedule_id = create_schedule(engine, ScheduleSpec("labels/customers", "* * * * *", inputs={"customer": 2},
                                                       labels={"source": "nightly"}), "test")
    assert api.get(f"/api/v1/schedules/{schedule_id}").json["labels"] == {"source": "nightly"}
    fired = fire_due(engine, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1, seconds=1))
    [mine] = [f for f in fired if f.flow_id == "labels/customers"]
    assert api.get(f"/api/v1/runs/{mine.run_id}").json["labels"] == {"source": "nightly"}


def test_the_console_shows_a_runs_labels_and_filters_the_runs_page_by_them(api, engine) -> None:
    from orchestrator.store.access import create_token

    api.save_flow(CUSTOMERS)
    tagged = api.post("/api/v1/flows/labels/customers/runs", json={"inputs": {"customer": 3},
                                                                  "labels": {"owner": "ops-console"}}).json["id"]
    plain = api.post("/api/v1/flows/labels/customers/runs", json={"inputs": {"customer": 4}}).json["id"]
    browser = api.client.application.test_client()
    signed = browser.post("/sign-in", data={"token": create_token(engine, "labels-console", Role.VIEWER)})
    assert signed.status_code == 302
    page = browser.get("/?labels=owner:ops-console")
    assert page.status_code == 200
    assert tagged[:8] in page.text and plain[:8] not in page.text
    assert "owner: ops-console" in page.text
    assert "owner: ops-console" in browser.get(f"/runs/{tagged}").text
    live = browser.get("/console/live/runs?labels=owner:ops-console").json["items"]
    assert [r["id"] for r in live] == [tagged] and live[0]["labels"] == {"owner": "ops-console"}


def test_the_command_line_labels_a_run_and_lists_runs_by_label_and_input(api, worker) -> None:
    import json
    import os
    import subprocess

    from tests.conftest import MILLRACE, ROOT

    def millrace(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*MILLRACE, *args], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                              timeout=120)

    api.save_flow(CUSTOMERS)
    ran = millrace("run", "labels/customers", "-i", "customer=77", "--label", "via=cli", "--priority", "4", "--json")
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["labels"] == {"via": "cli"} and run["priority"] == 4
    listed = json.loads(millrace("runs", "list", "--label", "via:cli", "--input", "customer=77", "-o", "json").stdout)
    assert [r["id"] for r in listed] == [run["id"]]
    table = millrace("runs", "list", "--label", "via:cli").stdout
    assert run["id"] in table and "via:cli" in table
    bad = millrace("run", "labels/customers", "-i", "customer=1", "--label", "nokeyvalue")
    assert bad.returncode != 0 and "--label" in bad.stderr


@classic_queues
def test_a_worker_refuses_a_queue_declared_before_priorities_and_says_what_to_do(engine, api) -> None:
    import kombu

    from tests.conftest import AMQP, QUEUE, Worker

    old = f"{QUEUE}_old"
    with kombu.Connection(AMQP) as conn:  # as a release before priorities declared it
        kombu.Queue(old, kombu.Exchange(old, "direct"), old)(conn.default_channel).declare()
    try:
        api.save_flow(f"id: labels/old_queue\nsteps:\n  - {{id: a, queue: {old}, bash: echo}}\n")
        started = api.post("/api/v1/flows/labels/old_queue/runs", json={})  # the broker refuses the queue ...
        assert started.status_code == 202, started.json  # ... and the run stays owed, not a 500
        assert api.get(f"/api/v1/runs/{started.json['id']}").json["status"] == "queued"
        with pytest.raises(RuntimeError) as refused:
            Worker([old], concurrency=1)
        assert f"queue '{old}' was declared without priorities" in str(refused.value)
        assert "MILLRACE_QUEUE_MAX_PRIORITY=0" in str(refused.value)
        kept = Worker([old], concurrency=1, env={"MILLRACE_QUEUE_MAX_PRIORITY": "0"})  # kept as it is: it starts
        kept.stop()
    finally:
        with kombu.Connection(AMQP) as conn:
            conn.default_channel.queue_delete(old)
