"""A `wmill sync pull` tree (tests/fixtures/windmill, written for this project from Windmill's
OpenFlow documentation) translated into Millrace flows and scripts that Millrace accepts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.definitions.parser import flow_from_data
from orchestrator.importers.report import Verdict
from orchestrator.importers.windmill import translate

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "windmill"
TREE = FIXTURES / "tree"


@pytest.fixture(scope="module")
def reports():
    return {Path(r.source).relative_to(TREE).as_posix(): r for r in translate([TREE])}


def flow(reports, name: str) -> dict:
    return reports[f"f/demo/{name}.flow/flow.yaml"].flows[0].document


def test_every_file_of_the_tree_has_a_report_and_every_runnable_flow_validates(reports):
    assert set(reports) == {
        "f/demo/gate.flow/flow.yaml", "f/demo/greet.flow/flow.yaml", "f/demo/loops.flow/flow.yaml",
        "f/demo/parent.flow/flow.yaml", "f/demo/rows.flow/flow.yaml", "f/demo/sign.flow/flow.yaml",
        "f/demo/greet.schedule.yaml", "f/scripts/count_above.script.yaml", "f/scripts/double.script.yaml",
        "f/scripts/hello.script.yaml", "f/scripts/nightly.script.yaml", "f/scripts/nightly.schedule.yaml",
        "f/scripts/report.script.yaml", "f/scripts/tagged.script.yaml"}
    for name in ("gate", "greet", "loops", "parent", "rows"):
        flow_from_data(flow(reports, name))
        assert not reports[f"f/demo/{name}.flow/flow.yaml"].untranslatable
    flow_from_data(reports["f/scripts/nightly.schedule.yaml"].flows[0].document)


def test_inline_scripts_and_input_transforms_become_code_steps_with_expressions(reports):
    steps = flow(reports, "greet")["steps"]
    assert [s["id"] for s in steps] == ["a", "b", "d"]
    assert steps[0]["python"].startswith("def main(name: str, times: int = 1)")
    assert steps[0]["with"] == {"name": "${{ inputs.name }}", "times": 2}
    assert steps[1]["with"] == {"text": "${{ steps.a.result.text }}"} and "$1" not in steps[1]["bash"]
    assert steps[2]["with"] == {"parts": "${{ [steps.b.result, ('n=' ~ (steps.a.result.n | string))] }}"}
    assert flow(reports, "greet")["inputs"] == {"name": {"type": "string", "description": "who to greet",
                                                         "default": "world"}}


def test_a_schedule_becomes_a_cron_trigger_of_its_flow(reports):
    assert flow(reports, "greet")["triggers"] == [{
        "id": "greet", "cron": "0 0 6 * * 1-5", "timezone": "Europe/Paris", "catchup": "none", "enabled": False,
        "overlap": "skip", "inputs": {"name": "team"}}]
    nightly = reports["f/scripts/nightly.schedule.yaml"].flows[0].document
    assert nightly["steps"] == [{"id": "run", "script": "f/scripts/nightly"}]
    assert nightly["triggers"][0]["cron"] == "0 0 2 * * *"


def test_loops_and_branches_map_to_for_each_loop_switch_and_parallel(reports):
    steps = {s["id"]: s for s in flow(reports, "loops")["steps"]}
    assert steps["squares"]["for_each"] == "${{ inputs.numbers }}" and steps["squares"]["parallel"] == 2
    assert steps["squares"]["do"][0]["with"] == {"n": "${{ item }}"}
    assert steps["labelled"]["parallel"] is False and steps["labelled"]["for_each"] == ["x", "y"]
    assert steps["countdown"]["loop"]["do"][0]["break_if"] == "${{ (result >= 7) }}"
    assert steps["size"]["switch"][0]["if"] == "${{ ((steps.squares.result | length) > 2) }}"
    assert steps["size"]["else"][0]["id"] == "small"
    assert [b["id"] for b in steps["both"]["parallel"]] == ["branch_0", "branch_1"]
    assert steps["summary"]["with"]["both"] == "${{ [steps.both.result.branch_0, steps.both.result.branch_1] }}"
    assert steps["same"]["with"] == {"value": "${{ [steps.both.result.branch_0, steps.both.result.branch_1] }}"}


def test_suspend_retry_skip_stop_sleep_and_the_failure_module(reports):
    document = flow(reports, "gate")
    steps = {s["id"]: s for s in document["steps"]}
    assert steps["amount"]["stop_if"] == "${{ (result == 0) }}"
    assert steps["ask_approval"]["approval"] == {"timeout": "1800s", "form": {
        "note": {"type": "string", "required": True, "description": "why"},
        "cap": {"type": "integer", "required": False, "default": 100}}}
    assert steps["done"]["with"]["note"] == "${{ steps.ask_approval.result.note }}"
    assert steps["flaky"]["retry"] == {"attempts": 3, "delay": "1s"} and steps["flaky"]["timeout"] == "60s"
    assert steps["skipped"]["if"] == "${{ not ((inputs.amount > 0)) }}"
    assert steps["done_sleep"] == {"id": "done_sleep", "sleep": "1s"}
    assert document["on_failure"][0]["with"] == {"message": "${{ run.error }}"}


def test_postgres_steps_get_their_database_secret_and_references_read_rows(reports):
    steps = {s["id"]: s for s in flow(reports, "rows")["steps"]}
    assert steps["insert"]["database"] == "f_vars_warehouse" and "%(qty)s" in steps["insert"]["sql"]
    assert steps["counted"] == {"id": "counted", "script": "f/scripts/count_above", "database": "f_vars_warehouse",
                                "with": {"threshold": "${{ steps.insert.result.rows[0].qty }}"}}
    findings = reports["f/demo/rows.flow/flow.yaml"].findings
    assert any("millrace secrets set f_vars_warehouse" in f.message for f in findings)


def test_saved_scripts_and_the_steps_calling_them_pass_what_wmill_calls_read(reports):
    tagged = reports["f/scripts/tagged.script.yaml"].scripts[0]
    assert tagged.path == "f/scripts/tagged" and tagged.language == "python" and "wmill" not in tagged.code
    steps = {s["id"]: s for s in flow(reports, "parent")["steps"]}
    assert steps["child"] == {"id": "child", "flow": "f/demo/greet", "with": {"name": "${{ inputs.who }}"}}
    assert steps["tagged"]["with"] == {"value": "${{ steps.doubled.result }}",
                                       "f_vars_region": "${{ vars.f_vars_region }}",
                                       "f_vars_api_key": "${{ secrets.f_vars_api_key }}"}


def test_typescript_steps_are_emitted_as_typescript(reports):
    steps = flow(reports, "sign")["steps"]
    assert [next(k for k in ("typescript", "python") if k in s) for s in steps] == ["typescript", "typescript"]
    assert steps[0]["with"]["shout"] == "${{ (inputs.text | upper) }}"
    assert steps[1]["with"] == {"signed": "${{ steps.c.result }}"}


def test_an_untranslatable_part_becomes_a_failing_step_naming_it_and_the_file_says_so(tmp_path):
    (tmp_path / "odd.json").write_text(json.dumps({"summary": "x", "value": {"modules": [
        {"id": "a", "value": {"type": "rawscript", "language": "python3", "content": "def main():\n    return 1\n",
                              "input_transforms": {}}},
        {"id": "b", "value": {"type": "rawscript", "language": "go", "content": "package inner",
                              "input_transforms": {}}},
        {"id": "c", "value": {"type": "aiagent"}},
    ]}}))
    [report] = translate([tmp_path / "odd.json"])
    assert report.untranslatable
    untranslatable = [f for f in report.findings if f.verdict is Verdict.UNTRANSLATABLE]
    assert [f.source_path for f in untranslatable] == ["value.modules[1]", "value.modules[2]"]
    steps = report.flows[0].document["steps"]
    assert "exit 1" in steps[1]["bash"] and "value.modules[1]" in steps[1]["bash"] and "'go'" in steps[1]["bash"]
    assert "aiagent" in steps[2]["bash"]
    flow_from_data(report.flows[0].document)


def test_an_untranslatable_saved_script_is_saved_as_one_that_fails_saying_why(reports):
    report = reports["f/scripts/report.script.yaml"]
    assert report.untranslatable and report.scripts[0].language == "bash"
    assert "'go'" in report.scripts[0].code and "exit 1" in report.scripts[0].code


def one_flow(tmp_path: Path, folder: str, module_id: str = "a"):
    """The report on a tree of one flow folder holding one identity module."""
    (tmp_path / folder).mkdir(parents=True)
    text = f"value:\n  modules:\n    - {{id: {module_id}, value: {{type: identity}}}}\n"
    (tmp_path / folder / "flow.yaml").write_text(text)
    [report] = translate([tmp_path])
    return report


def test_names_millrace_refuses_are_folded_and_the_renames_listed(tmp_path):
    report = one_flow(tmp_path, "f/Team.A/My Flow.flow", "a-1")
    assert report.flows[0].flow_id == "f/team/a/my_flow"
    assert report.renames == {"f/Team.A/My Flow": "f/team/a/my_flow"}
    assert report.flows[0].document["steps"][0]["id"] == "a_1"


def test_keys_the_import_does_not_carry_are_reported_and_outside_scripts_called_by_name(tmp_path):
    (tmp_path / "keys.json").write_text(json.dumps({"value": {"modules": [
        {"id": "a", "priority": 3, "value": {"type": "script", "path": "f/lib/upper", "squash": True,
                                             "input_transforms": {"x": {"type": "javascript",
                                                                        "expr": "flow_input.undeclared"}}}},
        {"id": "b", "value": {"type": "script", "path": "hub/123/slack/send", "input_transforms": {}}},
    ], "groups": [{"start_id": "a"}]}}))
    [report] = translate([tmp_path / "keys.json"])
    approximated = {f.source_path for f in report.findings if f.verdict is Verdict.APPROXIMATED}
    assert {"value.groups", "value.modules[0].priority", "value.modules[0].value.squash",
            "value.modules[0].value.path", "schema"} <= approximated
    document = report.flows[0].document
    assert document["steps"][0]["script"] == "f/lib/upper"
    assert document["inputs"] == {"undeclared": {"type": "string", "default": None}}
    assert [f.source_path for f in report.findings if f.verdict is Verdict.UNTRANSLATABLE] == ["value.modules[1]"]


def test_a_flow_folder_written_with_non_dotted_paths_is_read_too(tmp_path):
    report = one_flow(tmp_path, "f/x/plain__flow")
    assert report.flows[0].flow_id == "f/x/plain"
