"""`millrace import kestra`: flows written in Kestra's format (tests/fixtures/kestra) imported,
saved and run on real services, each ending as Kestra documents it would."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from orchestrator.cli.commands.imports import check
from orchestrator.cli.main import main
from orchestrator.importers import kestra
from orchestrator.store import tables
from orchestrator.store.variables import set_variable

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kestra"


def imported(name: str) -> str:
    """The Millrace flow text one fixture file becomes, checked to be valid."""
    (report,) = kestra.translate([FIXTURES / name])
    check(report)
    assert not report.problems, report.problems
    (flow,) = report.flows
    return document_text(flow.document)


def document_text(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def step(run, path: str):
    (found,) = [s for s in run.steps if s.path == path]
    return found


def test_inputs_variables_scripts_kv_secrets_and_outputs_run_as_in_kestra(run_flow, engine) -> None:
    set_variable(engine, "region", "eu-west", secret=False, keys=(), actor="test")
    set_variable(engine, "API_TOKEN", "s3cr3t-token", secret=True, keys=(os.environ["MILLRACE_SECRET_KEY"],),
                 actor="test")
    run = run_flow(imported("basics.yaml"), {"user": "ada"})
    assert run.status == "succeeded", run.error
    assert run.result == {"outputs": {"letters": 3}}
    # pluginDefaults made the Log WARN, which goes to stderr; the variable and kv were rendered into it
    assert "Hello ada, region eu-west" in step(run, "say_hello").logs
    assert step(run, "shout").result == {"value": "ADA"}
    assert step(run, "count").result == {"vars": {"letters": 3, "name": "ADA"}, "exitCode": 0}
    assert "ADA-ADA-green" in step(run, "repeat").logs
    assert "token has 12 characters" in step(run, "token_length").logs
    assert "s3cr3t-token" not in (step(run, "token_length").logs or "")


def test_flowable_tasks_run_their_tasks_as_kestra_does(run_flow) -> None:
    run = run_flow(imported("flowable.yaml"))
    assert run.status == "succeeded", run.error
    assert run.result == {"values": {"joined": "L/R1+R2", "branch": "not a", "picked": "B"}}
    assert step(run, "grid").result == [[{"value": "x1"}, {"value": "x2"}], [{"value": "y1"}, {"value": "y2"}]]
    assert step(run, "seq").result == [{"value": "0:a"}, {"value": "1:b"}, {"value": "2:c"}]
    assert step(run, "par").result == [{"value": "P"}, {"value": "Q"}]
    assert step(run, "skipped").status == "skipped"
    assert step(run, "last").result == {"value": "1>2"}  # the Dag's task after the two it depends on


def test_failures_continue_where_kestra_allows_and_errors_and_finally_run(run_flow) -> None:
    run = run_flow(imported("failures.yaml"))
    assert run.status == "failed"
    assert "stopped on purpose" in run.error
    assert step(run, "optional").status == "failed"  # allowFailure: the run went on
    assert step(run, "breaks").status == "failed"
    assert step(run, "never").status == "skipped"  # AllowFailure stops its own tasks at the failure
    assert step(run, "flaky").result == {"vars": {}, "exitCode": 0}
    assert step(run, "not_run").status == "skipped"  # runIf did not hold
    assert step(run, "on_failure.alert").status == "succeeded"  # errors
    assert step(run, "finally.cleanup").result == {"value": "cleaned"}  # finally


def test_loops_wait_until_their_condition_and_exit_ends_the_run(run_flow) -> None:
    run = run_flow(imported("loops.yaml"))
    assert run.status == "succeeded", run.error
    assert step(run, "wait").result == {"values": {"count": "3"}}
    assert step(run, "until").result == {"vars": {"n": 2}, "exitCode": 0}
    assert step(run, "pause").status == "succeeded"
    assert not [s for s in run.steps if s.step_id == "after_exit"]
    assert run.stopped_at == "done"


def test_node_python_and_shell_scripts_pass_outputs_on(run_flow) -> None:
    run = run_flow(imported("scripts.yaml"), {"word": "kestra"})
    assert run.status == "succeeded", run.error
    assert step(run, "node").result == {"vars": {"reversed": "artsek"}, "exitCode": 0}
    assert step(run, "py_file").result == {"vars": {"doubled": "artsekartsek"}, "exitCode": 0}
    assert "hi artsekartsek" in step(run, "shell").logs
    nap = step(run, "nap")
    assert nap.status == "succeeded" and (nap.finished_at - nap.started_at).total_seconds() >= 0.3  # Sleep
    # beforeCommands' pip install is the step's declared dependency; Kestra.outputs is what main returns
    assert step(run, "with_deps").result == {"vars": {"six": "1.16.0"}, "exitCode": 0}


def test_an_untranslatable_task_fails_naming_the_original_and_why(run_flow, capsys) -> None:
    assert main(["import", "kestra", str(FIXTURES / "untranslatable.yaml")]) == 1
    out = capsys.readouterr().out
    assert "untranslatable: tasks[0]: Millrace has no equivalent of the Kestra plugin io.kestra.plugin.aws.s3.Upload" \
        in out
    (report,) = kestra.translate([FIXTURES / "untranslatable.yaml"])
    run = run_flow(document_text(report.flows[0].document))
    assert run.status == "failed"
    assert step(run, "upload").error_type == "NotImplementedError"
    assert "Kestra task at tasks[0] (io.kestra.plugin.aws.s3.Upload) was not imported" in step(run, "upload").error


def _versions(engine, flow_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(tables.flow_versions)
                            .where(tables.flow_versions.c.flow_id == flow_id)).scalar_one()


def test_save_is_file_by_file_and_importing_again_saves_no_new_version(engine, worker, api, tmp_path, capsys) -> None:
    source = FIXTURES / "subflows"
    assert main(["import", "kestra", str(source), "--save", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "saved flow acme/family/parent@1" in out
    assert "renamed triggers[0]" not in out  # a Kestra trigger id Millrace takes as it is
    assert (tmp_path / "acme" / "family" / "child-flow.yaml").is_file()
    assert main(["import", "kestra", str(source), "--save"]) == 0
    assert "saved flow acme/family/parent@1" in capsys.readouterr().out
    assert _versions(engine, "acme/family/parent") == 1
    schedule = api.get("/api/v1/schedules?flow=acme/family/parent").json["items"][0]
    assert (schedule["cron"], schedule["timezone"], schedule["trigger"]) == ("0 7 * * 1-5", "Europe/Berlin",
                                                                           "every-morning")
    # The subflow's outputs come back to the parent; the child's success triggers the listener.
    parent = api.post("/api/v1/flows/acme/family/parent/runs?wait=90", json={}).json
    assert parent["status"] == "succeeded", parent
    assert parent["result"] == {"value": "child said 42"}
    deadline = time.monotonic() + 60
    while not (found := api.get("/api/v1/runs?flow=acme/family/on-child").json["items"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    heard = api.finished_run(found[0]["id"])
    assert heard["result"] == {"value": "heard 42"}


def test_a_file_with_an_invalid_flow_saves_nothing_of_its_own(engine, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: broken\nnamespace: acme.bad\ntasks:\n  - id: a\n    type: io.kestra.plugin.core.debug.Return\n"
                   "    format: '{{ inputs.missing }}'\n")
    assert main(["import", "kestra", str(bad), "--save"]) == 1
    out = capsys.readouterr().out
    assert "invalid" in out and "steps[0].with.value" in out
    assert _versions(engine, "acme/bad/broken") == 0


def test_a_retried_script_then_a_pause_resumed_by_an_approval(worker, api, capsys) -> None:
    assert main(["import", "kestra", str(FIXTURES / "approval.yaml"), "--save"]) == 0
    assert "saved flow acme/approval/approval@" in capsys.readouterr().out
    run_id = api.post("/api/v1/flows/acme/approval/approval/runs", json={}).json["id"]
    deadline = time.monotonic() + 120
    while not any(s["path"] == "wait_for_ok" and s["status"] == "waiting"
                  for s in api.get(f"/api/v1/runs/{run_id}").json["steps"]):
        assert time.monotonic() < deadline, api.get(f"/api/v1/runs/{run_id}").json
        time.sleep(0.1)
    assert api.post(f"/api/v1/runs/{run_id}/steps/wait_for_ok/approve", json={}).status_code == 200
    finished = api.finished_run(run_id)
    assert finished["status"] == "succeeded", finished
    assert finished["result"] == {"value": "resumed after attempt 2"}  # Kestra's retry: the second attempt
    flaky = [s for s in finished["steps"] if s["path"] == "flaky"]
    assert [s["status"] for s in flaky].count("failed") == 1 and "503" in str(flaky)
