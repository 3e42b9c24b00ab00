"""Saved scripts: saving a version (its inputs read, its packages locked), and the version
each ``script:`` step of a flow runs."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from orchestrator.definitions.flow import Flow
from orchestrator.definitions.script_inputs import infer_schema, split_ref
from orchestrator.definitions.step_code import check_arguments
from orchestrator.definitions.steps import ScriptStep
from orchestrator.definitions.validation import walk_steps
from orchestrator.errors import NotFound, Problem, ValidationError
from orchestrator.executors.environments import Index
from orchestrator.services.dependencies import lock_code, lock_js
from orchestrator.services.typescript import save_typescript
from orchestrator.store import versions


def save_script(engine: Engine, path: str, language: str, code: str, summary: str | None,
                actor: str, index: Index | None = None, home: Path | None = None) -> int:
    """Save a new version of the script at ``path`` (or find the latest unchanged); its input
    schema is read from the code, so code that cannot be read is refused here, a Python
    script's requirements are locked now (refused if they do not resolve), and a TypeScript
    script is transpiled now (the transpiler installed under ``home``)."""
    schema = infer_schema(language, code)
    if language == "python":
        lock_code(engine, code, index or Index(), "code")
    elif language == "javascript":
        lock_js(engine, code, (index or Index()).npm_registry, "code")
    elif language == "typescript":
        if home is None:
            raise ValueError("saving a TypeScript script needs the home its transpiler is installed in")
        save_typescript(engine, code, index or Index(), home, "code")
    values = {"language": language, "code": code, "summary": summary, "input_schema": schema,
              "created_by": actor}
    return versions.save_version(engine, versions.SCRIPTS, path, values, actor,
                                same_as={"language": language, "code": code, "summary": summary})


def pin_scripts(engine: Engine, flow: Flow) -> dict[str, int]:
    """The version each ``script:`` step of ``flow`` runs: its ``@N``, else the latest now.

    Raises ValidationError naming every step whose script or version does not exist.
    """
    steps = [(step, path) for step, path in walk_steps(flow) if isinstance(step, ScriptStep)]
    if not steps:
        return {}
    latest = versions.latest_versions(engine, versions.SCRIPTS, {split_ref(step.script)[0] for step, _ in steps})
    pins, problems = {}, []
    for step, path in steps:
        name, version = split_ref(step.script)
        try:
            pins[step.script] = _pinned(engine, name, version, latest)
        except NotFound as exc:
            problems.append(Problem(f"{path}.script", str(exc)))
    if problems:
        raise ValidationError(problems)
    return pins


def check_script_steps(engine: Engine, flow: Flow) -> None:
    """Refuse ``script:`` steps whose script does not exist or whose ``with`` does not fit
    the script's inputs: an unknown name, or a required input left out."""
    pins = pin_scripts(engine, flow)
    problems = []
    for step, path in walk_steps(flow):
        if isinstance(step, ScriptStep):
            name, _ = split_ref(step.script)
            saved = versions.get_version(engine, versions.SCRIPTS, name, pins[step.script])
            problems += check_arguments(saved["input_schema"], step.with_ or {}, f"{path}.with",
                                        f"script '{step.script}'", typed=saved["language"] != "bash")
    if problems:
        raise ValidationError(problems)


def _pinned(engine: Engine, path: str, version: int | None, latest: dict[str, int]) -> int:
    if version is None:
        if path not in latest:
            raise NotFound(f"no saved script '{path}'")
        return latest[path]
    versions.get_version(engine, versions.SCRIPTS, path, version)  # NotFound if it was never saved
    return version
