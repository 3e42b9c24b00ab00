"""`millrace schema` accepts exactly what the parser accepts: an editor using it flags no valid
flow and passes no flow the parser would refuse for its shape. Checked on every example, every
flow in the README and the docs, every flow written in the test suite, and a set of invalid ones."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest
import yaml

from orchestrator.definitions.flow import Flow

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    printed = subprocess.run([sys.executable, "-m", "orchestrator.cli", "schema"], cwd=ROOT, capture_output=True,
                             text=True, check=True)
    schema = json.loads(printed.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _documents() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        found[str(path.relative_to(ROOT))] = yaml.safe_load(path.read_text())
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)):
            _keep(found, f"{page.name} yaml block {i}", block)
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "steps" in node.value:
                _keep(found, f"{path.relative_to(ROOT)}:{node.lineno}", node.value)
    return found


def _keep(found: dict[str, Any], name: str, text: str) -> None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return
    if isinstance(data, dict) and "id" in data and "steps" in data:
        found[name] = data


DOCUMENTS = _documents()


def _parses(data: Any) -> bool:
    try:
        Flow.model_validate(data)
    except pydantic.ValidationError:
        return False
    return True


def test_there_are_enough_flows_to_mean_something() -> None:
    assert len(DOCUMENTS) >= 140
    assert sum(map(_parses, DOCUMENTS.values())) >= 100


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_the_schema_and_the_parser_agree(validator, name) -> None:
    data = DOCUMENTS[name]
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(data)]
    assert _parses(data) == (not errors), errors or "the schema accepts a flow the parser refuses"


INVALID = [
    {"id": "x", "steps": []},
    {"id": "x", "steps": [{"id": "a"}]},
    {"id": "x", "steps": [{"id": "a", "bash": "echo", "python": "def main(): pass"}]},
    {"id": "x", "steps": [{"id": "a", "bash": "echo", "retry": 3}]},
    {"id": "x", "steps": [{"id": "a", "bash": "echo", "timeout": "soon"}]},
    {"id": "x", "steps": [{"id": "a", "bash": "echo", "timeout": -1}]},
    {"id": "x", "steps": [{"id": "a", "bash": "echo", "cache": "forever"}]},
    {"id": "x", "steps": [{"id": "a", "approval": "ok?"}]},
    {"id": "x", "steps": [{"id": "a", "bash": "echo", "with": "${{ item }}"}]},
    {"id": "x", "steps": [{"id": "a", "bash": "echo", "limits": {"memory": "lots"}}]},
    {"id": "x", "steps": [{"id": "a b", "bash": "echo"}]},
    {"id": "x", "triggers": [{"cron": "* * * * *", "bogus": 1}], "steps": [{"id": "a", "bash": "echo"}]},
    {"id": "x", "triggers": [{"id": "bad id", "cron": "* * * * *"}], "steps": [{"id": "a", "bash": "echo"}]},
    {"id": "x", "inputs": {"n": {"type": "int"}}, "steps": [{"id": "a", "bash": "echo"}]},
    {"id": "x", "unknown": 1, "steps": [{"id": "a", "bash": "echo"}]},
]


@pytest.mark.parametrize("data", INVALID, ids=lambda d: json.dumps(d)[:80])
def test_an_invalid_flow_fails_both(validator, data) -> None:
    assert not _parses(data)
    assert list(validator.iter_errors(data))
