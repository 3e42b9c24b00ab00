"""`millrace import windmill` on a sync tree written for this project from Windmill's OpenFlow
documentation (tests/fixtures/windmill/tree): saved, then run on a real worker, each flow
giving the result Windmill documents for it (approximations named in docs/migration.md)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import PG, ROOT

pytestmark = pytest.mark.integration
TREE = ROOT / "tests" / "fixtures" / "windmill" / "tree"
TOKEN = "tok-" + uuid.uuid4().hex[:12]


def millrace(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def imported(api):
    """The tree imported with --save, and the variables and secrets its report asked for."""
    assert api.put("/api/v1/variables/f_vars_region", json={"value": "eu-west"}).status_code in (200, 201, 204)
    for name, value in (("f_vars_api_key", TOKEN), ("f_vars_warehouse", f"{PG}/postgres")):
        saved = api.put(f"/api/v1/variables/{name}", json={"value": value, "secret": True})
        assert saved.status_code in (200, 201, 204), saved.json
    return millrace("import", "windmill", str(TREE), "--save")


def start(api, flow_id: str, inputs: dict) -> str:
    started = api.post(f"/api/v1/flows/{flow_id}/runs", json={"inputs": inputs})
    assert started.status_code in (200, 201, 202), started.json
    return started.json["id"]


def run(api, flow_id: str, inputs: dict) -> dict:
    return api.finished_run(start(api, flow_id, inputs), timeout=180)


def waiting(api, run_id: str, step: str) -> None:
    deadline = time.monotonic() + 120
    while not any(s["path"] == step and s["status"] == "waiting" for s in api.get(f"/api/v1/runs/{run_id}").json[
            "steps"]):
        assert time.monotonic() < deadline, api.get(f"/api/v1/runs/{run_id}").json
        time.sleep(0.1)


def test_the_import_reports_every_file_saves_what_is_valid_and_says_what_is_not(imported):
    out = imported.stdout
    assert imported.returncode == 1, out  # report.go is untranslatable
    assert "untranslatable: report.go: Windmill language 'go'" in out
    assert "not saved: " not in out  # report.go is saved as a script that fails, naming why
    for saved in ("saved flow f/demo/sign@", "saved script f/scripts/report@",
                  "saved script f/scripts/count_above@", "saved script f/scripts/tagged@", "saved flow f/demo/greet@",
                  "saved flow f/demo/parent@", "saved flow f/scripts/nightly_schedule@"):
        assert saved in out, out
    assert out.index("saved flow f/demo/greet@") < out.index("saved flow f/demo/parent@")  # the subflow first
    assert "millrace secrets set f_vars_warehouse" in out


def test_importing_the_same_tree_again_saves_no_new_versions(imported, api):
    before = {f: api.get(f"/api/v1/flows/{f}").json["version"] for f in ("f/demo/greet", "f/demo/loops")}
    again = millrace("import", "windmill", str(TREE), "--save")
    assert "saved flow f/demo/greet@" in again.stdout
    assert {f: api.get(f"/api/v1/flows/{f}").json["version"] for f in before} == before
    assert f"saved flow f/demo/greet@{before['f/demo/greet']}" in again.stdout
    saved_lines = {line for line in imported.stdout.splitlines() if line.startswith("saved ")}
    assert saved_lines and {line for line in again.stdout.splitlines() if line.startswith("saved ")} == saved_lines


def test_the_schedule_file_became_the_flows_cron_trigger(imported, api):
    saved = api.get("/api/v1/flows/f/demo/greet").json
    triggers = saved["document"]["triggers"] if "document" in saved else saved["definition"]["triggers"]
    assert [(t["cron"], t["timezone"], t["enabled"]) for t in triggers] == [("0 0 6 * * 1-5", "Europe/Paris", False)]


def test_python_and_bash_rawscripts_pass_results_by_expression(imported, api):
    finished = run(api, "f/demo/greet", {"name": "ada"})
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == "HELLO ADA n=2"


def test_for_loops_while_loop_branches_and_identity_give_windmills_results(imported, api):
    finished = run(api, "f/demo/loops", {"numbers": [1, 2, 3]})
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == {"squares": [1, 4, 9], "labels": ["0:x", "1:y"], "size": "big", "both": [14, 3],
                                  "same": [14, 3], "ticks": 7}  # ticks: Windmill's would be [7] (documented)


def test_suspend_with_a_form_retry_skip_and_sleep(imported, api):
    marker = uuid.uuid4().hex
    run_id = start(api, "f/demo/gate", {"amount": 5, "marker": marker})
    waiting(api, run_id, "ask_approval")
    approved = api.post(f"/api/v1/runs/{run_id}/steps/ask_approval/approve", json={"values": {"note": "ok"}})
    assert approved.status_code == 200, approved.json
    finished = api.finished_run(run_id, timeout=120)
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == {"paid": "paid", "note": "ok", "cap": 100}
    statuses = {s["path"]: s["status"] for s in finished["steps"]}
    assert statuses["skipped"] == "skipped" and statuses["done_sleep"] == "succeeded"
    assert [s["status"] for s in finished["steps"] if s["path"] == "flaky"].count("failed") == 1  # then retried


def test_stop_after_if_ends_the_run_early_and_a_rejection_runs_the_failure_module(imported, api):
    stopped = run(api, "f/demo/gate", {"amount": 0})
    assert stopped["status"] == "succeeded" and stopped["result"] == 0, stopped
    assert {s["path"] for s in stopped["steps"]} == {"amount"}
    run_id = start(api, "f/demo/gate", {"amount": 5})
    waiting(api, run_id, "ask_approval")
    assert api.post(f"/api/v1/runs/{run_id}/steps/ask_approval/reject", json={}).status_code == 200
    failed = api.finished_run(run_id, timeout=120)
    assert failed["status"] == "failed"
    [failure] = [s for s in failed["steps"] if s["path"] == "on_failure.failure"]
    assert failure["status"] == "succeeded"
    assert failure["result"] == f"payment failed: {failed['error']}" and "rejected" in failed["error"]


def test_postgres_steps_bind_named_parameters_on_the_database_secret(imported, api):
    finished = run(api, "f/demo/rows", {"name": "bolt", "qty": 3})
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == {"row": {"name": "bolt", "qty": 3, "note": "LIKE 50%"}, "count": 7}


def test_subflow_and_saved_scripts_with_wmill_variables_and_positional_bash(imported, api):
    finished = run(api, "f/demo/parent", {"who": "bo"})
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == {"child": "HELLO BO n=2", "doubled": 24,
                                  "tagged": {"value": 24, "region": "eu-west", "token_length": len(TOKEN)},
                                  "hello": "hello bo"}
    assert TOKEN not in str(finished)


def test_bun_and_deno_typescript_with_an_npm_import_and_wmill_variables(imported, api):
    finished = run(api, "f/demo/sign", {"text": "hello ada"})
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == f"helloAdaFromEuWestKeyOf{len(TOKEN)}Characters"  # lodash's camelCase
