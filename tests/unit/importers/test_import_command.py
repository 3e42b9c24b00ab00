"""`millrace import windmill` without saving: the report, the --out files, the exit code."""
from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from orchestrator.cli.main import cli
from orchestrator.definitions.parser import flow_from_data

TREE = Path(__file__).resolve().parents[2] / "fixtures" / "windmill" / "tree"


def test_the_report_names_each_file_and_the_out_folder_holds_valid_flows_and_scripts(tmp_path):
    result = CliRunner().invoke(cli, ["import", "windmill", str(TREE), "--out", str(tmp_path)])
    assert result.exit_code == 1, result.output  # report.go (a Go script) is untranslatable
    assert f"{TREE}/f/scripts/report.script.yaml: 0 translated, 0 approximated, 1 untranslatable" in result.output
    assert "invalid:" not in result.output  # sign.flow's TypeScript steps included
    assert result.output.rstrip().endswith("14 files: 13 with no untranslatable part, 14 valid, 13 both")
    loops = yaml.safe_load((tmp_path / "f" / "demo" / "loops.yaml").read_text())
    assert flow_from_data(loops).id == "f/demo/loops"
    assert (tmp_path / "scripts" / "f" / "scripts" / "count_above.sql").read_text().count("%(threshold)s") == 1


def test_a_clean_import_exits_zero(tmp_path):
    (tmp_path / "one.json").write_text('{"value": {"modules": [{"id": "a", "value": {"type": "rawscript", '
                                       '"language": "bash", "content": "echo 1", "input_transforms": {}}}]}}')
    result = CliRunner().invoke(cli, ["import", "windmill", str(tmp_path / "one.json")])
    assert result.exit_code == 0, result.output
    assert "1 files: 1 with no untranslatable part, 1 valid, 1 both" in result.output
