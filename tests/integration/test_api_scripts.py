"""Saved scripts over HTTP: versions, inferred inputs, and flows whose steps run them."""
from __future__ import annotations

import pytest

from orchestrator.store.access import Role

pytestmark = pytest.mark.integration

ADD = """def main(a: int, b: int = 10) -> int:
    return a + b
"""
USES_ADD = """id: scripts/uses_add
inputs:
  a: {type: integer}
steps:
  - id: add
    script: demo/add
    with: {a: "${{ inputs.a }}"}
  - id: add_pinned
    script: demo/add@1
    with: {a: "${{ steps.add.result }}", b: 1}
  - id: shout
    script: demo/shout
    with: {word: "${{ steps.add_pinned.result }}"}
"""
SHOUT = 'echo "${word}!"'


def test_a_saved_script_is_versioned_and_its_inputs_read_from_main(api) -> None:
    first = api.put("/api/v1/scripts/demo/add", json={"language": "python", "code": ADD, "summary": "adds"})
    assert first.status_code == 201, first.json
    assert first.json["version"] == 1
    assert first.json["input_schema"] == {
        "type": "object", "additionalProperties": False, "required": ["a"],
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 10}}}
    same = api.put("/api/v1/scripts/demo/add", json={"language": "python", "code": ADD, "summary": "adds"})
    assert same.status_code == 200 and same.json["version"] == 1
    bash = api.put("/api/v1/scripts/demo/shout", json={"language": "bash", "code": SHOUT})
    assert bash.json["input_schema"]["required"] == ["word"]
    listed = api.get("/api/v1/scripts?prefix=demo/").json
    assert [item["path"] for item in listed["items"]] == ["demo/add", "demo/shout"]


def test_a_flow_runs_saved_scripts_latest_or_pinned(api) -> None:
    api.put("/api/v1/scripts/demo/add", json={"language": "python", "code": ADD, "summary": "adds"})
    api.put("/api/v1/scripts/demo/shout", json={"language": "bash", "code": SHOUT})
    times = ADD.replace("a + b", "a * b")
    second = api.put("/api/v1/scripts/demo/add", json={"language": "python", "code": times, "summary": "adds"})
    assert second.json["version"] == 2
    history = api.get("/api/v1/scripts/demo/add/versions").json["items"]
    assert "-    return a + b\n+    return a * b" in history[1]["diff"]
    api.save_flow(USES_ADD)
    run = api.post("/api/v1/flows/scripts/uses_add/runs?wait=60", json={"inputs": {"a": 3}}).json
    # latest (v2) multiplies: 3 * 10 = 30; pinned v1 adds: 30 + 1 = 31; bash echoes it.
    assert run["status"] == "succeeded", run
    assert [s["result"] for s in run["steps"]] == [30, 31, "31!"]


def test_a_run_keeps_the_script_version_it_started_with(api) -> None:
    api.put("/api/v1/scripts/demo/pinned", json={"language": "python", "code": "def main():\n    return 'old'"})
    api.save_flow("""id: scripts/gated
steps:
  - {id: gate, approval: {}}
  - {id: which, script: demo/pinned}
""")
    run_id = api.post("/api/v1/flows/scripts/gated/runs", json={}).json["id"]
    api.put("/api/v1/scripts/demo/pinned", json={"language": "python", "code": "def main():\n    return 'new'"})
    api.approve_when_waiting(run_id, "gate")
    run = api.finished_run(run_id)
    assert run["result"] == "old"
    again = api.post("/api/v1/flows/scripts/gated/runs", json={}).json["id"]
    api.approve_when_waiting(again, "gate")
    assert api.finished_run(again)["result"] == "new"


@pytest.mark.parametrize(("flow", "path", "message"), [
    ("steps: [{id: s, script: demo/nowhere}]", "steps[0].script", "no saved script 'demo/nowhere'"),
    ("steps: [{id: s, script: demo/add@99}]", "steps[0].script", "script 'demo/add' version 99 does not exist"),
    ("steps: [{id: s, script: demo/add, with: {a: 1, c: 2}}]", "steps[0].with.c",
     "script 'demo/add' takes no input 'c'; it takes: a, b"),
    ("steps: [{id: s, script: demo/add, with: {b: 2}}]", "steps[0].with", "script 'demo/add' needs input 'a'"),
])
def test_a_flow_that_misuses_a_script_is_refused_naming_the_step(api, flow, path, message) -> None:
    api.put("/api/v1/scripts/demo/add", json={"language": "python", "code": ADD})
    refused = api.put("/api/v1/flows/scripts/bad", data=f"id: scripts/bad\n{flow}",
                      headers={"Content-Type": "application/yaml"})
    assert refused.status_code == 422, refused.json
    assert {"path": path, "message": message} in refused.json["errors"]
    assert api.get("/api/v1/flows/scripts/bad").status_code == 404  # nothing stored


@pytest.mark.parametrize(("body", "path", "message"), [
    ({"language": "python", "code": "def main(:\n  pass"}, "code (line 1, column 10)", "Python syntax error"),
    ({"language": "python", "code": "x = 1"}, "code", "defines a top-level `def main(...)`"),
    ({"language": "javascript", "code": "const x = 1"}, "code", "defines `function main(...)`"),
    ({"language": "cobol", "code": "x"}, "language", "Input should be"),
    ({"language": "python"}, "code", "required field missing"),
    ({"language": "python", "code": ADD, "owner": "me"}, "owner", "unknown field"),
])
def test_unreadable_scripts_are_refused_and_nothing_is_saved(api, body, path, message) -> None:
    refused = api.put("/api/v1/scripts/demo/broken", json=body)
    assert refused.status_code == 422, refused.json
    assert any(e["path"] == path and message in e["message"] for e in refused.json["errors"]), refused.json
    assert api.get("/api/v1/scripts/demo/broken").status_code == 404


def test_a_script_path_must_be_a_path(api) -> None:
    refused = api.put("/api/v1/scripts/Demo/../etc", json={"language": "bash", "code": "echo"})
    assert refused.status_code == 422 and refused.json["errors"][0]["path"] == "path"


def test_a_deleted_script_stops_new_runs_but_its_versions_stay(api) -> None:
    api.put("/api/v1/scripts/demo/gone", json={"language": "bash", "code": "echo bye"})
    api.save_flow("id: scripts/uses_gone\nsteps: [{id: s, script: demo/gone}]")
    assert api.delete("/api/v1/scripts/demo/gone").status_code == 204
    refused = api.post("/api/v1/flows/scripts/uses_gone/runs", json={})
    assert refused.status_code == 422
    assert refused.json["errors"] == [{"path": "steps[0].script", "message": "no saved script 'demo/gone'"}]
    assert api.get("/api/v1/scripts/demo/gone?version=1").json["code"] == "echo bye"


def test_only_developers_and_admins_save_scripts(api) -> None:
    for role in (Role.VIEWER, Role.OPERATOR):
        refused = api.put("/api/v1/scripts/demo/x", role=role, json={"language": "bash", "code": "echo"})
        assert refused.status_code == 403
