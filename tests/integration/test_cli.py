"""The command line: what a user types, what they read, what is stored."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import func, select

from orchestrator.cli.main import main
from orchestrator.store import tables

pytestmark = pytest.mark.integration


def _runs(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(tables.runs)).scalar_one()


def test_a_flow_naming_a_missing_script_is_refused_before_anything_is_stored(
        engine, tmp_path, capsys) -> None:
    flow = tmp_path / "later.yaml"
    flow.write_text("id: test/later\nsteps:\n  - id: ok\n    bash: echo\n"
                    "  - id: saved\n    script: billing/make_invoice\n")
    before = _runs(engine)
    assert main(["run", str(flow)]) == 2
    assert "steps[1].script: no saved script 'billing/make_invoice'" in capsys.readouterr().err
    assert _runs(engine) == before


def test_wrong_inputs_are_refused_with_their_path(engine, tmp_path, capsys) -> None:
    flow = tmp_path / "typed.yaml"
    flow.write_text("id: test/typed\ninputs:\n  n: {type: integer}\nsteps:\n  - id: x\n    bash: echo $N\n"
                    "    with: {N: \"${{ inputs.n }}\"}\n")
    assert main(["run", str(flow), "--input", "n=many"]) == 2
    assert "inputs.n: 'many' is not a valid integer" in capsys.readouterr().err
    assert main(["run", str(flow)]) == 2
    assert "inputs.n: required input missing (integer)" in capsys.readouterr().err


def test_run_prints_the_result_and_json_prints_the_steps(engine, worker, tmp_path, capsys) -> None:
    child = tmp_path / "child.yaml"
    child.write_text("id: test/cli_child\ninputs:\n  x: {type: integer}\nsteps:\n  - id: double\n"
                     "    python: \"def main(x: int) -> int:\\n    return 2 * x\"\n"
                     "    with: {x: \"${{ inputs.x }}\"}\n")
    parent = tmp_path / "parent.yaml"
    parent.write_text("id: test/cli_parent\ninputs:\n  n: {type: integer, default: 4}\nsteps:\n  - id: sub\n"
                      "    flow: child.yaml\n    with: {x: \"${{ inputs.n }}\"}\n")
    assert main(["run", str(parent), "--input", "n=21"]) == 0
    assert json.loads(capsys.readouterr().out) == 42
    assert main(["run", str(parent), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "succeeded" and summary["result"] == 8
    assert [(s["path"], s["status"], s["attempt"]) for s in summary["steps"]] == [("sub", "succeeded", 1)]
    assert dt.datetime.fromisoformat(summary["finished_at"]) >= dt.datetime.fromisoformat(summary["created_at"])
    assert main(["runs", "show", summary["id"]]) == 0  # `id`, as the API says
    shown = capsys.readouterr().out
    assert "sub" in shown and "succeeded" in shown and "result:\n8" in shown


def test_a_failed_run_exits_non_zero_with_its_error(engine, worker, tmp_path, capsys) -> None:
    flow = tmp_path / "fail.yaml"
    flow.write_text("id: test/cli_fail\nsteps:\n  - id: boom\n    bash: echo broken >&2; exit 4\n")
    assert main(["run", str(flow)]) == 1
    assert "step boom failed: exit code 4: broken" in capsys.readouterr().err


def test_schema_describes_every_step_kind(capsys) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    kinds = {name.removesuffix("Step").lower() for name in schema["$defs"] if name.endswith("Step")}
    assert {"python", "bash", "foreach", "parallel", "switch", "approval", "sleep", "subflow"} <= kinds
