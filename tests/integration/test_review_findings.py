"""Where the features merged for issue 16 meet: restarts of runs with finally steps, the
priority of a run's finally steps, ... on a real worker, broker and database."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

REPORT = '"def main(status: str, error) -> list:\\n    return [status, error]"'
REPORT_WITH = '{status: "${{ run.status }}", error: "${{ run.error }}"}'


@pytest.fixture
def gate(engine):
    """``review_ok``: steps gated on it fail until ``gate(True)``."""
    from config.settings import load_settings
    from orchestrator.store.variables import set_variable

    def set_gate(value: bool) -> None:
        set_variable(engine, "review_ok", value, secret=False, keys=load_settings().secret_keys, actor="test")

    set_gate(False)
    return set_gate


def by_path(run: dict) -> dict[str, dict]:
    return {s["path"]: s for s in run["steps"]}


FINALLY_PARALLEL = f"""id: review/finally_parallel
steps:
  - {{id: gated, python: "def main() -> int:\\n    return 1", fail_if: "${{{{ not vars.review_ok }}}}"}}
finally:
  - id: tidy
    parallel:
      - id: a
        steps:
          - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
"""


@pytest.mark.parametrize("body", [{"from_failed": True}, {"from": "gated"}])
def test_a_run_whose_finally_step_is_composite_restarts_and_runs_its_finally_steps_again(api, gate, body):
    """A restart of a run with a parallel (or any composite) finally step used to answer 500:
    restarts.choose looked the finally step's children up as main steps (KeyError)."""
    api.save_flow(FINALLY_PARALLEL)
    first = api.finished_run(api.post("/api/v1/flows/review/finally_parallel/runs", json={}).json["id"])
    assert first["status"] == "failed"
    assert by_path(first)["finally.tidy.a.report"]["result"][0] == "failed"
    gate(True)
    answer = api.post(f"/api/v1/runs/{first['id']}/restart", json=body)
    assert answer.status_code == 202, answer.json
    second = api.finished_run(answer.json["id"])
    assert second["status"] == "succeeded", second
    report = by_path(second)["finally.tidy.a.report"]
    assert report["reused_from"] is None and report["result"] == ["succeeded", None]  # ran again, in this run


def test_a_finally_step_is_no_restart_point_and_is_not_offered_as_one(api, gate):
    api.save_flow(FINALLY_PARALLEL)
    first = api.finished_run(api.post("/api/v1/flows/review/finally_parallel/runs", json={}).json["id"])
    refused = api.post(f"/api/v1/runs/{first['id']}/restart", json={"from": "finally.tidy.a.report"})
    assert refused.status_code == 422, refused.json
    assert "did you mean 'finally" not in refused.json["errors"][0]["message"]


def test_a_run_s_finally_steps_are_sent_at_its_priority(run_flow, engine):
    """Every message of a run goes at its priority (README); the finally phase's, built from
    the run's record by the publisher (and by the sweeper), went without one."""
    from orchestrator.cli.wiring import publisher_for
    from orchestrator.services.publisher import finally_message

    run = run_flow(f"""id: review/finally_priority
priority: 7
steps:
  - {{id: work, python: "def main() -> int:\\n    return 1"}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    assert run.status == "succeeded" and run.priority == 7
    plan = publisher_for(engine).plans.plan(run.flow_id, run.flow_version)
    message = finally_message(plan, run)
    first = message.tasks[0] if hasattr(message, "tasks") else message
    assert first.options.get("priority") == 7, first.options
    assert first.kwargs.get("priority") == 7, first.kwargs  # what the later messages of the phase take


def _waiting(api, run_id: str, step: str, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not any(s["path"] == step and s["status"] == "waiting"
                  for s in api.get(f"/api/v1/runs/{run_id}").json["steps"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_starter_cannot_approve_their_own_run_through_a_link_for_their_role(api):
    """self_approval: false holds however the starter decides: a link they had made for their
    own role decided as ``role:operator`` and was never compared with the run's starter."""
    from orchestrator.store.access import Role

    api.save_flow("id: review/self_link\nsteps:\n  - id: review\n    approval: {self_approval: false}\n")
    run_id = api.post("/api/v1/flows/review/self_link/runs", Role.OPERATOR, json={}).json["id"]
    _waiting(api, run_id, "review")
    listed = api.get(f"/api/v1/runs/{run_id}/approvals", Role.OPERATOR, query_string={"approver": "role:operator"})
    assert listed.status_code == 200, listed.json
    resume = listed.json["items"][0]["links"]["resume"].split("://", 1)[1].split("/", 1)[1]
    followed = api.client.post(f"/{resume}", data={"decision": "approve"})
    assert followed.status_code == 403, followed.text
    assert api.get(f"/api/v1/runs/{run_id}").json["status"] == "suspended"


def test_a_message_coalesced_into_a_debounced_run_records_that_run_as_its_fire(engine):
    """An event trigger on a flow with a debounce: the second message joins the pending run,
    and its fire must name that run (it named a fresh id no run has)."""
    from orchestrator.cli.wiring import publisher_for
    from orchestrator.services.decisions import cancel
    from orchestrator.services.events import Message, Policy, fire
    from orchestrator.store import views
    from tests.integration.event_triggers import doubling_flow, fires, save, trigger_of, unique

    flow_id = unique("review_debounced_events")
    save(engine, doubling_flow(flow_id, f"    amqp: {{queue: {flow_id}}}").replace(
        "steps:", "concurrency: {debounce: 30s}\nsteps:", 1))
    publisher = publisher_for(engine)
    row = trigger_of(engine, flow_id, "events")
    fired = [fire(publisher, row, Message(f'{{"n": {n}}}'.encode(), {}, flow_id, f"m{n}"), Policy())
             for n in (1, 2)]
    assert [f.status for f in fired] == ["started", "started"]
    recorded = {f["message_key"]: f["run_id"] for f in fires(engine, flow_id, "events")}
    run = views.get_run(engine, fired[0].run_id, with_steps=False)  # the one run, with the latest inputs
    try:
        assert run.inputs == {"n": 2}
        assert fired[1].run_id == run.id and recorded == {"m1": run.id, "m2": run.id}
    finally:
        cancel(publisher, lambda task_ids: None, run.id, actor="test")


def test_a_schedule_slot_coalesced_into_a_debounced_run_records_that_run(api, engine):
    """The same for a schedule's slot: its fire named a run id that was never recorded."""
    import datetime as dt

    from orchestrator.services.scheduling import ScheduleSpec, create_schedule, fire_due
    from orchestrator.store import schedules

    api.save_flow("id: review/debounced_schedule\nconcurrency: {debounce: 30s}\n"
                  "steps:\n  - {id: a, python: \"def main() -> int:\\n    return 1\"}\n")
    pending = api.post("/api/v1/flows/review/debounced_schedule/runs", json={}).json["id"]
    schedule_id = create_schedule(engine, ScheduleSpec("review/debounced_schedule", "* * * * *"), "test")
    try:
        fire_due(engine, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1, seconds=1))
        [slot] = schedules.fires_of(engine, schedule_id, limit=10)
        assert slot["status"] == "started" and slot["run_id"] == pending, slot
    finally:
        api.delete(f"/api/v1/schedules/{schedule_id}")
        api.post(f"/api/v1/runs/{pending}/cancel")


def test_a_retried_start_that_had_joined_a_debounced_run_gets_that_run_again(api):
    import time

    api.save_flow("id: review/debounced_key\nconcurrency: {debounce: 1s}\n"
                  "steps:\n  - {id: a, python: \"def main() -> int:\\n    return 1\"}\n")
    pending = api.post("/api/v1/flows/review/debounced_key/runs", json={}).json["id"]
    key = {"Idempotency-Key": f"review-{pending}"}
    joined = api.post("/api/v1/flows/review/debounced_key/runs", json={}, headers=key)
    assert joined.json["id"] == pending
    time.sleep(1.5)  # the window has ended: a retry of that same request ...
    retried = api.post("/api/v1/flows/review/debounced_key/runs", json={}, headers=key)
    assert retried.json["id"] == pending  # ... is the same start, not a new run


def test_who_started_the_parent_run_may_not_approve_its_subflow_run_s_self_approval_false_step(api, engine):
    """self_approval compares with the run's starter; a subflow run's starter was the worker,
    so whoever started the parent approved the approval they were barred from."""
    import time

    from sqlalchemy import select

    from orchestrator.store.access import Role
    from orchestrator.store.tables import runs

    api.save_flow("id: review/self_child\nsteps:\n  - id: review\n    approval: {self_approval: false}\n")
    api.save_flow("id: review/self_parent\nsteps:\n  - {id: sub, flow: review/self_child}\n")
    parent = api.post("/api/v1/flows/review/self_parent/runs", Role.OPERATOR, json={}).json["id"]
    deadline = time.monotonic() + 60
    while True:
        with engine.connect() as conn:
            child = conn.execute(select(runs.c.id).where(runs.c.parent_run_id == parent)).scalar()
        if child is not None:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _waiting(api, child, "review")
    try:
        refused = api.post(f"/api/v1/runs/{child}/steps/review/approve", Role.OPERATOR, json={})
        assert refused.status_code == 403, refused.json
    finally:
        api.post(f"/api/v1/runs/{parent}/cancel")


def test_a_stop_if_inside_a_loop_ends_the_run_and_its_finally_steps_see_it_succeeded(run_flow):
    run = run_flow(f"""id: review/stop_in_loop
steps:
  - id: count
    loop:
      do:
        - id: inc
          python: "def main(i: int) -> int:\\n    return i"
          with: {{i: "${{{{ iteration }}}}"}}
          stop_if: "${{{{ result == 2 }}}}"
      until: "${{{{ false }}}}"
      max_iterations: 6
  - {{id: never, python: "def main() -> int:\\n    return 1"}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    assert (run.status, run.result, run.stopped_at) == ("succeeded", 2, "count[2].inc")
    paths = {s.path for s in run.steps}
    assert "count[3].inc" not in paths and "never" not in paths
    assert [s.result for s in run.steps if s.path == "finally.report"] == [["succeeded", None]]


def test_a_cancel_link_of_a_waiting_approval_runs_the_finally_steps_and_its_resume_link_is_gone(api):
    from orchestrator.store.access import Role

    api.save_flow(f"""id: review/cancel_link_finally
steps:
  - id: review
    approval: {{form: {{amount: {{type: integer, required: true}}}}}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    run_id = api.post("/api/v1/flows/review/cancel_link_finally/runs", Role.OPERATOR, json={}).json["id"]
    _waiting(api, run_id, "review")
    links = api.get(f"/api/v1/runs/{run_id}/approvals", Role.OPERATOR).json["items"][0]["links"]
    cancel, resume = (links[k].split("://", 1)[1].split("/", 1)[1] for k in ("cancel", "resume"))
    done = api.client.post(f"/{cancel}", data={"decision": "cancel"})
    assert done.status_code == 200, done.text
    run = api.finished_run(run_id)
    assert run["status"] == "cancelled"
    assert by_path(run)["finally.report"]["result"] == ["cancelled", None]
    assert api.client.get(f"/{resume}").status_code == 410
    assert api.client.post(f"/{resume}", data={"decision": "approve", "amount": "3"}).status_code == 410


STOPPED_THEN_FINALLY_FAILS = """id: review/stop_then_failing_finally
steps:
  - {id: check, python: "def main() -> int:\\n    return 0", stop_if: "${{ result == 0 }}"}
  - {id: never, python: "def main() -> int:\\n    return 1"}
finally:
  - {id: tidy, python: "def main() -> int:\\n    return 1", fail_if: "${{ not vars.review_ok }}"}
"""


def test_restarting_a_stopped_run_whose_finally_step_failed_stops_again_at_its_stop_if(api, gate):
    """A run stopped by stop_if, failed by its finally step: restarted from the failed steps,
    the steps the stop_if ended the run before must not run (``never`` ran)."""
    api.save_flow(STOPPED_THEN_FINALLY_FAILS)
    first = api.finished_run(api.post("/api/v1/flows/review/stop_then_failing_finally/runs", json={}).json["id"])
    assert (first["status"], first["stopped_at"]) == ("failed", "check"), first
    gate(True)
    answer = api.post(f"/api/v1/runs/{first['id']}/restart", json={"from_failed": True})
    assert answer.status_code == 202, answer.json
    second = api.finished_run(answer.json["id"])
    assert second["status"] == "succeeded", second
    assert "never" not in by_path(second), by_path(second)
    assert second["stopped_at"] == "check" and second["result"] == 0
    assert by_path(second)["finally.tidy"]["status"] == "succeeded"


def test_the_console_offers_no_finally_step_as_a_restart_point(api, engine, gate):
    from orchestrator.store.access import Role, create_token

    api.save_flow(FINALLY_PARALLEL.replace("review/finally_parallel", "review/finally_console"))
    run_id = api.post("/api/v1/flows/review/finally_console/runs", json={}).json["id"]
    assert api.finished_run(run_id)["status"] == "failed"
    browser = api.client.application.test_client()
    browser.post("/sign-in", data={"token": create_token(engine, "review-console", Role.OPERATOR)})
    page = browser.get(f"/runs/{run_id}").text
    assert "<option>gated</option>" in page and "<option>finally." not in page


def test_a_restart_keeps_the_run_s_labels_and_priority_and_a_finally_step_labels_it(api, gate):
    api.save_flow("""id: review/labelled_restart
labels: {team: billing}
priority: 3
steps:
  - {id: gated, python: "def main() -> int:\\n    return 4", fail_if: "${{ not vars.review_ok }}"}
finally:
  - {id: tidy, python: "def main(s: str) -> str:\\n    return s", with: {s: "${{ run.status }}"},
     labels: {ended: "${{ result }}"}}
""")
    started = api.post("/api/v1/flows/review/labelled_restart/runs", json={"labels": {"who": "review"},
                                                                          "priority": 8})
    first = api.finished_run(started.json["id"])
    assert first["labels"] == {"team": "billing", "who": "review", "ended": "failed"}, first["labels"]
    gate(True)
    second = api.finished_run(api.post(f"/api/v1/runs/{first['id']}/restart", json={"from": "gated"}).json["id"])
    assert second["status"] == "succeeded" and second["priority"] == 8
    assert second["labels"] == {"team": "billing", "who": "review", "ended": "succeeded"}, second["labels"]
    listed = api.get("/api/v1/runs", query_string={"label": "ended:succeeded", "flow": "review/labelled_restart"})
    assert [r["id"] for r in listed.json["items"]] == [second["id"]], listed.json


def test_a_restart_after_an_approval_with_a_form_reuses_its_typed_values_without_waiting(api, gate):
    api.save_flow("""id: review/form_restart
steps:
  - id: review
    approval: {form: {amount: {type: integer, required: true}}}
  - id: after
    python: "def main(n) -> str:\\n    return f'{type(n).__name__} {n}'"
    with: {n: "${{ steps.review.result.amount }}"}
    fail_if: "${{ not vars.review_ok }}"
""")
    run_id = api.post("/api/v1/flows/review/form_restart/runs", json={}).json["id"]
    _waiting(api, run_id, "review")
    assert api.post(f"/api/v1/runs/{run_id}/steps/review/approve", json={"values": {"amount": 7}}).status_code == 200
    assert api.finished_run(run_id)["status"] == "failed"
    gate(True)
    second = api.finished_run(api.post(f"/api/v1/runs/{run_id}/restart", json={"from_failed": True}).json["id"])
    assert (second["status"], second["result"]) == ("succeeded", "int 7"), second
    review = by_path(second)["review"]
    assert review["reused_from"] == run_id and review["result"] == {"amount": 7}


def test_a_debounced_run_cancelled_in_its_window_never_starts_and_a_later_start_is_a_new_run(api):
    import time

    api.save_flow(f"""id: review/debounced_cancel
concurrency: {{debounce: 2s}}
steps:
  - {{id: a, python: "def main() -> int:\\n    return 1"}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    pending = api.post("/api/v1/flows/review/debounced_cancel/runs", json={}).json["id"]
    assert api.post(f"/api/v1/runs/{pending}/cancel").status_code in (200, 202)
    later = api.post("/api/v1/flows/review/debounced_cancel/runs", json={}).json["id"]
    assert later != pending
    assert api.finished_run(later)["status"] == "succeeded"
    time.sleep(1)
    cancelled = api.get(f"/api/v1/runs/{pending}").json
    assert cancelled["status"] == "cancelled" and cancelled["steps"] == [], cancelled  # nothing of it ran


def test_an_approval_left_waiting_by_a_failed_sibling_branch_cannot_be_decided_once_the_run_ended(api):
    """A parallel branch fails while the other waits on an approval: the run ends failed (after
    its finally steps). Its approval must not stay decidable, through the API or a link."""
    from orchestrator.store.access import Role

    api.save_flow(f"""id: review/failed_beside_approval
steps:
  - id: both
    parallel:
      - id: ask
        steps:
          - id: review
            approval: {{}}
      - id: boom
        steps:
          - {{id: fail, python: "import time\\ndef main():\\n    time.sleep(1)\\n    raise ValueError('no')"}}
finally:
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    run_id = api.post("/api/v1/flows/review/failed_beside_approval/runs", json={}).json["id"]
    _waiting(api, run_id, "both.ask.review")
    links = api.get(f"/api/v1/runs/{run_id}/approvals", Role.OPERATOR).json["items"][0]["links"]
    run = api.finished_run(run_id)
    assert run["status"] == "failed"
    assert by_path(run)["finally.report"]["result"][0] == "failed"
    assert api.get(f"/api/v1/runs/{run_id}/approvals", Role.OPERATOR).json["items"] == []
    resume = links["resume"].split("://", 1)[1].split("/", 1)[1]
    assert api.client.get(f"/{resume}").status_code == 410
    assert api.post(f"/api/v1/runs/{run_id}/steps/both.ask.review/approve", json={}).status_code in (404, 409)


def test_an_approval_in_a_finally_branch_ends_when_a_sibling_finally_step_fails_the_run(api):
    """An approval waiting in a finally step suspends the run; the after-phases only matched a
    run 'running', so the failing sibling's fail_finally matched nothing and the run stayed
    suspended for good (and later finally steps would have been refused)."""
    from orchestrator.store.access import Role

    api.save_flow("""id: review/finally_approval_beside_failure
steps:
  - {id: a, python: "def main() -> int:\\n    return 1"}
finally:
  - id: both
    parallel:
      - id: ask
        steps: [{id: review, approval: {}}]
      - id: boom
        steps:
          - {id: fail, python: "import time\\ndef main():\\n    time.sleep(1)\\n    raise ValueError('no')"}
""")
    run_id = api.post("/api/v1/flows/review/finally_approval_beside_failure/runs", json={}).json["id"]
    run = api.finished_run(run_id, timeout=20)  # it stayed suspended for good: fail_finally wants it running
    assert run["status"] == "failed"
    assert api.get(f"/api/v1/runs/{run_id}/approvals", Role.OPERATOR).json["items"] == []


def test_an_approval_in_the_finally_steps_suspends_the_run_and_its_approval_ends_it(api):
    api.save_flow(f"""id: review/finally_approval
steps:
  - {{id: a, python: "def main() -> int:\\n    return 1"}}
finally:
  - {{id: sign_off, approval: {{}}}}
  - {{id: report, python: {REPORT}, with: {REPORT_WITH}}}
""")
    run_id = api.post("/api/v1/flows/review/finally_approval/runs", json={}).json["id"]
    api.approve_when_waiting(run_id, "finally.sign_off")
    run = api.finished_run(run_id)
    assert (run["status"], run["result"]) == ("succeeded", 1)
    assert by_path(run)["finally.report"]["result"] == ["succeeded", None]
