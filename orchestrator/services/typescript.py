"""TypeScript steps and scripts: transpiled when saved, run as JavaScript.

Saving TypeScript installs the transpiler like any npm package (its lock kept, its
``node_modules`` built once per machine under ``MILLRACE_HOME``, from
``MILLRACE_NPM_REGISTRY`` when set), turns the code into JavaScript, keeps that by the
code's digest and locks the npm packages it imports; a worker then runs the kept JavaScript
exactly as a JavaScript step's.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from orchestrator.definitions.flow import Flow
from orchestrator.definitions.steps import TypeScriptStep
from orchestrator.errors import DependencyError, Problem, ValidationError, join_path
from orchestrator.executors.environments import Index, node_modules
from orchestrator.executors.typescript import TRANSPILER, transpile
from orchestrator.services.dependencies import lock_js, npm_lock_for
from orchestrator.store.transpiled import kept_javascript


def transpiler_modules(engine: Engine, home: Path, registry: str | None) -> Path:
    """The ``node_modules`` holding the transpiler, installed once per machine from its kept lock."""
    return node_modules(home, [TRANSPILER], npm_lock_for(engine, [TRANSPILER], registry))


def javascript_for(engine: Engine, code: str, home: Path, registry: str | None) -> str:
    """The JavaScript kept for TypeScript ``code``, transpiled now if none is kept yet.

    Raises ValidationError at ``code (line L, column C)`` for a syntax error, DependencyError
    if the transpiler cannot be installed or run.
    """
    return kept_javascript(engine, code, lambda: transpile(transpiler_modules(engine, home, registry), code))


def save_typescript(engine: Engine, code: str, index: Index, home: Path, path: str) -> str:
    """Transpile and keep TypeScript ``code`` and lock the npm packages it imports; a
    ValidationError at ``path`` (with the line and column of a syntax error) if it cannot be."""
    try:
        javascript = javascript_for(engine, code, home, index.npm_registry)
    except ValidationError as exc:
        raise ValidationError([Problem(path + p.path.removeprefix("code"), p.message) for p in exc.problems]) from None
    except DependencyError as exc:
        raise ValidationError([Problem(path, f"the TypeScript transpiler is not available: {exc}")]) from None
    lock_js(engine, javascript, index.npm_registry, path)
    return javascript


def save_flow_typescript(engine: Engine, flow: Flow, index: Index, home: Path | None) -> None:
    """Transpile every TypeScript step of ``flow`` (see :func:`save_typescript`); every
    step's problems at once."""
    problems = []
    for step, where in flow.walk():
        if isinstance(step, TypeScriptStep):
            if home is None:
                raise ValueError("saving a TypeScript step needs the home its transpiler is installed in")
            try:
                save_typescript(engine, step.typescript, index, home, f"{join_path(*where)}.typescript")
            except ValidationError as exc:
                problems += exc.problems
    if problems:
        raise ValidationError(problems)
