"""Steps' packages locked when a flow or script is saved (or at a step's first run), so a
run months later installs the same versions. Locks are kept in the store
(``dependency_locks``, keyed by the requirements); environments are built from them on the
workers (``executors/environments.py``)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from orchestrator.definitions.flow import Flow
from orchestrator.definitions.requirements import npm_requirements_of, requirements_of
from orchestrator.definitions.steps import JavaScriptStep, PythonStep
from orchestrator.errors import DependencyError, Problem, ValidationError, join_path
from orchestrator.executors.environments import Index, resolve, resolve_npm
from orchestrator.store.locks import kept_lock, lock_of


def lock_for(engine: Engine, requirements: list[str], index: Index) -> str:
    """The lock of ``requirements``: the one kept before, else resolved now and kept."""
    return kept_lock(engine, requirements, lambda: resolve(requirements, index))


def npm_lock_for(engine: Engine, packages: list[str], registry: str | None = None) -> str:
    """The package-lock.json for ``packages`` (latest versions when first asked), kept like
    Python locks: the same packages install the same versions later."""
    return kept_lock(engine, [f"npm:{name}" for name in packages], lambda: resolve_npm(packages, registry))


def describe(requirements: list[str], lock: str | None) -> dict[str, Any]:
    """What the API shows about a script's dependencies."""
    return {"requirements": requirements, "lock": lock.splitlines() if lock else []}


def lock_code(engine: Engine, code: str, index: Index, path: str) -> dict[str, Any]:
    """Resolve and keep the lock of ``code``'s requirements now (when a script or flow is
    saved); a ValidationError at ``path`` carries uv's message if they do not resolve."""
    try:
        requirements = requirements_of(code)
        lock = lock_for(engine, requirements, index) if requirements else None
    except DependencyError as exc:
        raise ValidationError([Problem(path, f"dependencies do not resolve: {exc}")]) from None
    return describe(requirements, lock)


def lock_js(engine: Engine, code: str, registry: str | None, path: str) -> None:
    """Resolve and keep the npm lock of a JavaScript step's imports now; a ValidationError at
    ``path`` carries npm's message if they do not resolve."""
    packages = npm_requirements_of(code)
    if packages:
        try:
            npm_lock_for(engine, packages, registry)
        except DependencyError as exc:
            raise ValidationError([Problem(path, f"npm packages do not resolve: {exc}")]) from None


def lock_flow(engine: Engine, flow: Flow, index: Index) -> None:
    """Lock the packages of every Python and JavaScript step of ``flow`` (see :func:`lock_code`)."""
    problems = []
    for step, where in flow.walk():
        path = join_path(*where)
        try:
            if isinstance(step, PythonStep):
                lock_code(engine, step.python, index, f"{path}.python")
            elif isinstance(step, JavaScriptStep):
                lock_js(engine, step.javascript, index.npm_registry, f"{path}.javascript")
        except ValidationError as exc:
            problems += exc.problems
    if problems:
        raise ValidationError(problems)


def index_of(settings: Any) -> Index:
    """The package index the settings name (MILLRACE_PIP_INDEX_URL, MILLRACE_PIP_EXTRA_INDEX_URLS)."""
    return Index(settings.pip_index_url or None, tuple(settings.pip_extra_index_urls),
                 settings.npm_registry or None)


def dependencies_of(engine: Engine, code: str) -> dict[str, Any]:
    """A Python script's requirements and the lock kept for them (empty if none yet)."""
    requirements = requirements_of(code)
    if not requirements:
        return describe([], None)
    return describe(requirements, lock_of(engine, requirements))
