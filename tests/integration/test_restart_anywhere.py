"""Restart anywhere, on a real worker: from a step inside a for_each item, a parallel branch or
a switch case, from the failed steps, on the latest flow version. Every step that can be
reused writes a row to a table when its code runs, so a reused step is seen not to run again."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from orchestrator.store.audit import list_audit

pytestmark = pytest.mark.integration


def log(step_id: str, where: str, *, gate: str | None = None, more: str = "") -> str:
    """A step that records that its code ran (``where``: the path it writes); with ``gate`` it
    fails after running while the variable ``anywhere_ok`` is false and ``gate`` holds."""
    fail = f', fail_if: "${{{{ {gate} and not vars.anywhere_ok }}}}"' if gate else ""
    return (f'{{id: {step_id}, sql: "INSERT INTO restart_log (run_id, path) VALUES (%(run)s, %(path)s) '
            f'RETURNING path", database: restart_db, with: {{run: "${{{{ run.id }}}}", path: "{where}"}}{fail}{more}}}')


ITEMS = f"""id: restart/items
steps:
  - {{id: numbers, python: "def main() -> list:\\n    return [10, 11, 12, 13, 14]"}}
  - id: each
    for_each: "${{{{ steps.numbers.result }}}}"
    do:
      - {log("work", "each[${{ index }}].work", gate="index == 3", more=", continue_on_error: true")}
  - id: check
    python: "def main(xs: list) -> int:\\n    assert None not in xs, 'an item failed'\\n    return len(xs)"
    with: {{xs: "${{{{ steps.each.result }}}}"}}
"""
BRANCHES = f"""id: restart/branches
steps:
  - id: par
    parallel:
      - id: left
        steps:
          - {log("l1", "par.left.l1")}
          - {log("l2", "par.left.l2", gate="true", more=", continue_on_error: true")}
      - id: right
        steps:
          - {log("r1", "par.right.r1")}
  - id: check
    python: "def main(r: dict) -> str:\\n    assert r['left'] is not None, 'left failed'\\n    return 'ok'"
    with: {{r: "${{{{ steps.par.result }}}}"}}
"""
CASES = f"""id: restart/cases
steps:
  - {log("before", "before")}
  - id: pick
    switch:
      - if: "${{{{ steps.before.result.rows[0].path == 'before' }}}}"
        do:
          - {log("s1", "pick.s1")}
          - {log("s2", "pick.s2", gate="true")}
    else:
      - {log("other", "pick.other")}
"""

LOOP = f"""id: restart/loop
steps:
  - id: count
    loop:
      do:
        - {log("inc", "count[${{ iteration }}].inc", gate="iteration == 2")}
      until: "${{{{ iteration >= 3 }}}}"
      max_iterations: 10
"""


@pytest.fixture(scope="module")
def restart_db(engine, database_url):
    from config.settings import load_settings
    from orchestrator.store.variables import set_variable

    keys = load_settings().secret_keys
    set_variable(engine, "restart_db", database_url, secret=True, keys=keys, actor="test")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS restart_log (run_id text, path text)"))


@pytest.fixture
def allowed(engine):
    """The gated steps fail until ``allow()`` is called."""
    from config.settings import load_settings
    from orchestrator.store.variables import set_variable

    def allow(value: bool = True) -> None:
        set_variable(engine, "anywhere_ok", value, secret=False, keys=load_settings().secret_keys, actor="test")

    allow(False)
    return allow


def executions(engine, *run_ids: str) -> dict[str, int]:
    """How often each logged step's code ran in these runs, by path."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT path, count(*) FROM restart_log WHERE run_id = ANY(:ids) GROUP BY path"),
                            {"ids": list(run_ids)}).all()
    return {path: count for path, count in rows}


def failed_run(api, text: str) -> dict:
    flow = api.save_flow(text)
    started = api.post(f"/api/v1/flows/{flow['id']}/runs", json={})
    assert started.status_code == 202, started.json
    run = api.finished_run(started.json["id"])
    assert run["status"] == "failed", run
    return run


def restarted(api, run_id: str, body: dict) -> dict:
    answer = api.post(f"/api/v1/runs/{run_id}/restart", json=body)
    assert answer.status_code == 202, answer.json
    assert answer.json["restarted_from"] == run_id
    run = api.finished_run(answer.json["id"])
    assert run["status"] == "succeeded", run
    return run


def by_path(run: dict) -> dict[str, dict]:
    return {s["path"]: s for s in run["steps"]}


def test_a_restart_from_a_for_each_item_reuses_the_other_items_without_running_them(
        api, engine, restart_db, allowed):
    first = failed_run(api, ITEMS)
    assert "an item failed" in first["error"]
    allowed()
    second = restarted(api, first["id"], {"from": "each[3].work"})
    assert second["result"] == 5 and second["version"] == first["version"]
    assert executions(engine, first["id"], second["id"]) == {
        "each[0].work": 1, "each[1].work": 1, "each[2].work": 1, "each[3].work": 2, "each[4].work": 1}
    steps = by_path(second)
    reused = {path for path, s in steps.items() if s["reused_from"] == first["id"]}
    assert reused == {"numbers", "each[0].work", "each[1].work", "each[2].work", "each[4].work"}
    assert steps["each[3].work"]["reused_from"] is None and steps["each[3].work"]["status"] == "succeeded"
    assert steps["each"]["reused_from"] is None and steps["check"]["reused_from"] is None
    assert steps["each[0].work"]["result"] == by_path(first)["each[0].work"]["result"]

    # the timeline and the audit trail say which outcomes were reused
    svg = api.get(f"/api/v1/runs/{second['id']}/timeline.svg").data.decode()
    assert "each[0].work (reused)" in svg and "each[3].work (reused)" not in svg
    actions = [(e["action"], e["details"].get("path"))
               for e in list_audit(engine, target=f"run:{second['id']}", limit=500)]
    assert ("step.reused", "each[0].work") in actions and ("step.succeeded", "each[3].work") in actions
    assert ("step.succeeded", "each[0].work") not in actions


def test_a_restart_inside_a_parallel_branch_reuses_the_steps_before_it_and_the_other_branch(
        api, engine, restart_db, allowed):
    first = failed_run(api, BRANCHES)
    allowed()
    second = restarted(api, first["id"], {"from": "par.left.l2"})
    assert second["result"] == "ok"
    assert executions(engine, first["id"], second["id"]) == {
        "par.left.l1": 1, "par.left.l2": 2, "par.right.r1": 1}
    steps = by_path(second)
    assert steps["par.left.l1"]["reused_from"] == first["id"] and steps["par.right.r1"]["reused_from"] == first["id"]
    assert steps["par.left.l2"]["reused_from"] is None


def test_a_restart_inside_a_switch_case_reuses_the_case_steps_before_it(api, engine, restart_db, allowed):
    first = failed_run(api, CASES)
    again = api.post(f"/api/v1/runs/{first['id']}/restart", json={"from": "pick.s2"}).json["id"]
    second = api.finished_run(again)  # still not allowed: fails again, at the same step
    assert second["status"] == "failed" and by_path(second)["pick.s1"]["reused_from"] == first["id"]
    allowed()
    third = restarted(api, second["id"], {"from": "pick.s2"})
    assert executions(engine, first["id"], second["id"], third["id"]) == {"before": 1, "pick.s1": 1, "pick.s2": 3}
    steps = by_path(third)
    # a restart of a restart names the run where the reused step ran
    assert steps["before"]["reused_from"] == first["id"] and steps["pick.s1"]["reused_from"] == first["id"]
    assert steps["pick.s2"]["reused_from"] is None and steps["pick"]["status"] == "succeeded"
    assert "pick.other" not in steps


def test_a_restart_inside_a_loop_iteration_reuses_the_earlier_iterations(api, engine, restart_db, allowed):
    first = failed_run(api, LOOP)
    allowed()
    second = restarted(api, first["id"], {"from": "count[2].inc"})
    assert executions(engine, first["id"], second["id"]) == {
        "count[0].inc": 1, "count[1].inc": 1, "count[2].inc": 2, "count[3].inc": 1}
    steps = by_path(second)
    assert [steps[f"count[{i}].inc"]["reused_from"] for i in range(4)] == [first["id"], first["id"], None, None]


def test_from_the_failed_steps_reruns_only_them_and_what_follows(api, engine, restart_db, allowed):
    first = failed_run(api, ITEMS)
    refused = api.post(f"/api/v1/runs/{first['id']}/restart", json={"from": "failed"})
    assert refused.status_code == 422 and '"from_failed": true' in refused.json["errors"][0]["message"]
    allowed()
    second = restarted(api, first["id"], {"from_failed": True})
    assert second["result"] == 5
    counts = executions(engine, first["id"], second["id"])
    assert counts == {"each[0].work": 1, "each[1].work": 1, "each[2].work": 1, "each[3].work": 2, "each[4].work": 1}
    assert [p for p, s in by_path(second).items() if s["reused_from"] is None] == ["each", "each[3].work", "check"]


def test_a_restart_on_the_latest_version_runs_its_steps_and_refuses_a_path_it_lacks(
        api, engine, restart_db, allowed):
    first = failed_run(api, ITEMS.replace("id: restart/items", "id: restart/latest"))
    fixed = ITEMS.replace("id: restart/items", "id: restart/latest").replace(" and not vars.anywhere_ok", "")
    fixed = fixed.replace('fail_if: "${{ index == 3 }}"', 'fail_if: "${{ false }}"')
    fixed = fixed.replace("id: check", "id: tally")
    saved = api.save_flow(fixed)
    assert saved["version"] == first["version"] + 1
    missing = api.post(f"/api/v1/runs/{first['id']}/restart", json={"from": "check", "version": "latest"})
    assert missing.status_code == 422, missing.json
    assert missing.json["errors"][0]["path"] == "from"
    assert "'check' is not a step of restart/latest version" in missing.json["errors"][0]["message"]
    second = restarted(api, first["id"], {"from": "each[3].work", "version": "latest"})  # anywhere_ok still false
    assert second["version"] == saved["version"] and second["result"] == 5
    assert by_path(second)["each[1].work"]["reused_from"] == first["id"]
    assert "tally" in by_path(second) and "check" not in by_path(second)
    assert executions(engine, first["id"], second["id"])["each[1].work"] == 1


def test_restart_refusals_name_the_problem(api, engine, restart_db, allowed):
    first = failed_run(api, CASES.replace("id: restart/cases", "id: restart/refusals"))
    unknown = api.post(f"/api/v1/runs/{first['id']}/restart", json={"from": "pick.s3"})
    assert unknown.status_code == 422
    problem = unknown.json["errors"][0]
    assert problem["path"] == "from" and problem["message"].startswith(
        "'pick.s3' is not a step of restart/refusals version 1; did you mean 'pick.s2' or 'pick.s1'")
    both = api.post(f"/api/v1/runs/{first['id']}/restart", json={"from": "pick.s2", "from_failed": True})
    assert both.status_code == 422 and both.json["errors"][0]["path"] == "from"
    neither = api.post(f"/api/v1/runs/{first['id']}/restart", json={})
    assert neither.status_code == 422
    bad_version = api.post(f"/api/v1/runs/{first['id']}/restart", json={"from": "pick.s2", "version": "newest"})
    assert bad_version.status_code == 422 and bad_version.json["errors"][0]["path"] == "version"

    gated = api.save_flow("id: restart/waits\nsteps:\n  - {id: gate, approval: {}}\n")
    waiting = api.post(f"/api/v1/flows/{gated['id']}/runs", json={}).json["id"]
    busy = api.post(f"/api/v1/runs/{waiting}/restart", json={"from": "gate"})
    assert busy.status_code == 409, busy.json
    api.post(f"/api/v1/runs/{waiting}/cancel", json={})


def test_the_command_line_restarts_from_the_failed_steps(api, engine, restart_db, allowed, capsys):
    from orchestrator.cli.main import main

    first = failed_run(api, CASES.replace("id: restart/cases", "id: restart/cli"))
    assert main(["runs", "restart", first["id"]]) == 2  # neither --from nor --failed
    allowed()
    capsys.readouterr()
    assert main(["runs", "restart", first["id"], "--failed", "--latest"]) == 0
    second = api.finished_run(capsys.readouterr().out.strip())
    assert second["status"] == "succeeded" and second["restarted_from"] == first["id"]
    assert executions(engine, first["id"], second["id"]) == {"before": 1, "pick.s1": 1, "pick.s2": 2}


def test_the_console_restarts_from_a_nested_step_and_marks_what_it_reused(api, engine, restart_db, allowed):
    import uuid

    from orchestrator.store.access import Role, create_token

    first = failed_run(api, ITEMS.replace("id: restart/items", "id: restart/console"))
    browser = api.client.application.test_client()
    token = create_token(engine, f"console-{uuid.uuid4().hex[:6]}", Role.OPERATOR)
    assert browser.post("/sign-in", data={"token": token}).status_code == 302
    page = browser.get(f"/runs/{first['id']}").text
    assert "<option>each[3].work</option>" in page and "Re-run the failed steps" in page
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    allowed()
    moved = browser.post(f"/runs/{first['id']}/restart", data={"csrf": csrf, "from": "each[3].work"})
    assert moved.status_code == 302, moved.text
    second = api.finished_run(moved.headers["Location"].rsplit("/", 1)[1])
    assert second["status"] == "succeeded" and second["restarted_from"] == first["id"]
    shown = browser.get(f"/runs/{second['id']}").text
    assert shown.count(f'title="reused from run {first["id"]}') == 2 * 5  # graph and steps: numbers, 4 items
    wrong = browser.post(f"/runs/{first['id']}/restart", data={"csrf": csrf, "from": "each[9].work"})
    assert wrong.status_code == 422 and "the run has no each[9]" in wrong.text
