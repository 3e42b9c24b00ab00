"""Flow files as a user hands them over: subflow files resolved and saved alongside.

A ``flow:`` step may name another flow file by path (relative to the file naming it);
the referenced file is parsed, checked and saved first, and the step is rewritten to the
saved ``id@version`` so that a run always uses the version it started with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from orchestrator import records
from orchestrator.errors import Problem, ValidationError
from orchestrator.flow import Flow
from orchestrator.parser import flow_from_data, load_document

_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_NESTED_LISTS = ("do", "else")  # step keys holding step lists directly


def load_flow_file(path: Path, engine: Engine, *, _chain: tuple[Path, ...] = ()) -> tuple[Flow, str]:
    """Parse ``path`` and save the subflow files it names; returns the flow and its text."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise ValidationError([Problem("", f"subflows call each other in a cycle: {cycle}")])
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError([Problem("", f"cannot read {path}: {exc.strerror}")]) from None
    data = load_document(source, "application/json" if path.suffix == ".json" else None)
    if isinstance(data, dict):
        for steps in (data.get("steps"), data.get("on_failure")):
            _link(steps, path, engine, (*_chain, path))
    return flow_from_data(data), source


def _link(steps: Any, parent: Path, engine: Engine, chain: tuple[Path, ...]) -> None:
    if not isinstance(steps, list):
        return
    for step in steps:
        if not isinstance(step, dict):
            continue
        ref = step.get("flow")
        if isinstance(ref, str) and ref.endswith(_FILE_SUFFIXES):
            child, child_source = load_flow_file(parent.parent / ref, engine, _chain=chain)
            version = records.save_flow(engine, child, child_source)
            step["flow"] = f"{child.id}@{version}"
        for key in _NESTED_LISTS:
            _link(step.get(key), parent, engine, chain)
        for branch in _mappings(step.get("parallel")):
            _link(branch.get("steps"), parent, engine, chain)
        for case in _mappings(step.get("switch")):
            _link(case.get("do"), parent, engine, chain)


def _mappings(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
