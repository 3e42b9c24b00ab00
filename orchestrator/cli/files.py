"""Flow and script files as a user hands them over, saved through the API.

A ``flow:`` step may name another flow file by path (relative to the file naming it): that
file is saved first and the step rewritten to the saved ``id@version``, so that a run always
uses the version it started with. A refusal names the file and the line of each place.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.cli.client import Answer, Client, Refused
from orchestrator.definitions.parser import flow_from_data, load_document
from orchestrator.definitions.steps import SCRIPT_PATH, SubflowStep
from orchestrator.errors import Problem, ValidationError

FLOW_SUFFIXES = (".yaml", ".yml", ".json")
SCRIPT_LANGUAGES = {".py": "python", ".sh": "bash", ".js": "javascript", ".mjs": "javascript", ".ts": "typescript",
                    ".sql": "sql"}


def save_flow_file(client: Client, path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Save the flow in ``path`` (and first the subflow files it names); the saved version."""
    return put_flow_file(client, path, _chain).body


def put_flow_file(client: Client, path: Path, _chain: tuple[Path, ...] = ()) -> Answer:
    """As :func:`save_flow_file`, with the API's status: 201 a new version, 200 unchanged."""
    path = path.resolve()
    if path in _chain:
        raise ValidationError([Problem("", f"subflows call each other in a cycle: "
                                           f"{' -> '.join(p.name for p in (*_chain, path))}")])
    text = _read(path)
    with _named(path, text):
        data = load_document(text, "application/json" if path.suffix == ".json" else None)
        flow = flow_from_data(data)
    linked = False
    for step, where in flow.walk():
        if isinstance(step, SubflowStep) and step.flow.endswith(FLOW_SUFFIXES):
            child = save_flow_file(client, path.parent / step.flow, (*_chain, path))
            _at(data, where)["flow"] = f"{child['id']}@{child['version']}"
            linked = True
    with _named(path, text):
        if linked:  # the document with its subflows pinned; the file itself is unchanged
            return client.call("PUT", f"/flows/{flow.id}", text=pinned_text(data), content_type="application/json")
        return client.call("PUT", f"/flows/{flow.id}", text=text, content_type=(
            "application/json" if path.suffix == ".json" else "application/yaml"))


def pinned_text(data: Any) -> str:
    """The document with its subflows pinned, as the JSON it is saved as (YAML's dates and
    times as the ISO text the stored document keeps)."""
    return json.dumps(data, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))


def linked_text(data: Any, saved_source: str) -> str | None:
    """``data`` (a flow file naming subflow files) with the pins its saved version has at the
    same places, as :func:`pinned_text` would save it; None if the saved version has none there."""
    try:
        saved = json.loads(saved_source)
        flow = flow_from_data(data)
    except (ValueError, ValidationError):
        return None
    for step, where in flow.walk():
        if isinstance(step, SubflowStep) and step.flow.endswith(FLOW_SUFFIXES):
            try:
                _at(data, where)["flow"] = _at(saved, where)["flow"]
            except (KeyError, IndexError, TypeError):
                return None
    return pinned_text(data)


def load_flow_text(path: Path) -> tuple[str, Any]:
    """A flow file's text and data (JSON read as JSON); ValidationError naming the file."""
    text = _read(path)
    with _named(path, text):
        return text, load_document(text, "application/json" if path.suffix == ".json" else None)


def script_of(path: Path, root: Path) -> tuple[str, str, str] | None:
    """(script path, language, code) of a script file under ``root``, or None if it is not one."""
    language = SCRIPT_LANGUAGES.get(path.suffix)
    if language is None:
        return None
    key = path.relative_to(root).with_suffix("").as_posix()
    if not re.fullmatch(SCRIPT_PATH, key):
        return None
    return key, language, _read(path)


def is_flow_file(path: Path) -> bool:
    """Whether ``path`` holds a flow (a mapping with an id and steps); a file that does not
    parse is one if it says `steps:` (its error is then reported where it is saved)."""
    if path.suffix not in FLOW_SUFFIXES:
        return False
    try:
        _, data = load_flow_text(path)
    except ValidationError:
        return "steps" in path.read_text(encoding="utf-8", errors="replace")
    return isinstance(data, dict) and "id" in data and "steps" in data


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError([Problem("", f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")]) from None


class _named:
    """Problems raised inside, locally or by the API, named by ``path`` and the line."""

    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if isinstance(exc, Refused) and exc.problem.get("errors"):
            problems = [Problem(e.get("path", ""), e.get("message", "")) for e in exc.problem["errors"]]
        elif isinstance(exc, ValidationError):
            problems = exc.problems
        else:
            return
        raise ValidationError([self._where(p) for p in problems]) from None

    def _where(self, problem: Problem) -> Problem:
        if str(problem.path).startswith(_shown(self.path)):
            return problem  # a subflow file's problem, named already
        line = line_of(self.text, problem.path)
        place = _shown(self.path) + (f":{line}" if line else "")
        return Problem(f"{place}: {problem.path}" if problem.path else place, problem.message)


def _shown(path: Path) -> str:
    """``path`` as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def line_of(text: str, path: str) -> int | None:
    """The line (1-based) where the JSON path ``path`` (``steps[0].with.n``) is in the YAML ``text``."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    best = node
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path or ""):
        if node is None:
            break
        if part.startswith("[") and isinstance(node, yaml.SequenceNode):
            index = int(part[1:-1])
            node = node.value[index] if index < len(node.value) else None
        elif isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if getattr(key, "value", None) == part), None)
        else:
            node = None
        best = node or best
    return best.start_mark.line + 1 if best is not None else None


def _at(data: Any, where: tuple[str | int, ...]) -> dict[str, Any]:
    for part in where:
        data = data[part]
    return data
