"""Flow files as a user hands them over: subflow files resolved and saved alongside.

A ``flow:`` step may name another flow file by path (relative to the file naming it);
the referenced file is parsed, checked, locked and saved first (through the same
:func:`~orchestrator.services.saving.save_flow` as any flow), and the step is rewritten to
the saved ``id@version`` so that a run always uses the version it started with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from orchestrator.definitions.flow import Flow, SubflowStep
from orchestrator.definitions.parser import flow_from_data, load_document
from orchestrator.errors import Problem, ValidationError
from orchestrator.executors.base import Limits
from orchestrator.executors.environments import Index
from orchestrator.services.saving import save_flow

_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def load_flow_file(path: Path, engine: Engine, *, actor: str = "cli", index: Index | None = None,
                   ceiling: Limits | None = None, _chain: tuple[Path, ...] = ()) -> tuple[Flow, str]:
    """Parse ``path`` and save the subflow files it names; returns the flow and its text.

    A problem in a subflow file is reported with that file's name before its path."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise ValidationError([Problem("", f"subflows call each other in a cycle: {cycle}")])
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError([Problem("", f"cannot read {path}: {exc.strerror}")]) from None
    data = load_document(source, "application/json" if path.suffix == ".json" else None)
    flow = flow_from_data(data)
    linked = False
    for step, where in flow.walk():
        if isinstance(step, SubflowStep) and step.flow.endswith(_FILE_SUFFIXES):
            child_path = path.parent / step.flow
            try:
                child, child_source = load_flow_file(child_path, engine, actor=actor, index=index,
                                                     ceiling=ceiling, _chain=(*_chain, path))
                version = save_flow(engine, child, child_source, actor=actor, index=index or Index(),
                                    ceiling=ceiling)
            except ValidationError as exc:
                raise ValidationError([_in_file(child_path, p) for p in exc.problems]) from None
            _at(data, where)["flow"] = f"{child.id}@{version}"
            linked = True
    return (flow_from_data(data) if linked else flow), source


def _at(data: Any, where: tuple[str | int, ...]) -> dict[str, Any]:
    for part in where:
        data = data[part]
    return data


def _in_file(path: Path, problem: Problem) -> Problem:
    if problem.message.startswith(f"{path.name}:") or problem.path.startswith(f"{path.name}:"):
        return problem  # named already (a file nested deeper names its own)
    return Problem(f"{path.name}: {problem.path}" if problem.path else f"{path.name}", problem.message)
