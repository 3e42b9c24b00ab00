"""What a code step's code says, checked against the step before anything runs (pure).

A Python or JavaScript step's ``main`` is read as a saved script's is (``script_inputs``):
the code must parse and define ``main``, the step's ``with`` must name only parameters
``main`` takes and give every one it needs, and a literal ``with`` value must fit the
parameter's type hint. Values written as expressions are known only at run time and are
checked then.
"""
from __future__ import annotations

from typing import Any

from orchestrator.definitions.flow import Flow, JavaScriptStep, PythonStep
from orchestrator.definitions.script_inputs import infer_schema
from orchestrator.errors import Problem, ValidationError, did_you_mean, join_path

_JSON_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "null"}


def check_step_code(flow: Flow) -> list[Problem]:
    """Every problem in the code of ``flow``'s Python and JavaScript steps and their ``with``."""
    problems: list[Problem] = []
    for step, parts in flow.walk():
        path = join_path(*parts)
        if isinstance(step, PythonStep):
            language, code = "python", step.python
        elif isinstance(step, JavaScriptStep):
            language, code = "javascript", step.javascript
        else:
            continue
        try:
            schema = infer_schema(language, code)
        except ValidationError as exc:
            problems += [Problem(f"{path}.{language}{p.path.removeprefix('code')}", p.message) for p in exc.problems]
            continue
        problems += check_arguments(schema, step.with_, f"{path}.with", "main")
    return problems


def check_arguments(schema: dict[str, Any], given: dict[str, Any], path: str, what: str) -> list[Problem]:
    """``given`` (a step's ``with``) against the input ``schema`` of ``what`` (``main``, a
    script): unknown names, missing required ones, literal values of the wrong type."""
    known = schema.get("properties", {})
    problems = []
    if not schema.get("additionalProperties", False):
        for name in given:
            if name not in known:
                problems.append(Problem(f"{path}.{name}", f"{what} takes no input '{name}'"
                                        f"{did_you_mean(name, known)}; it takes: {', '.join(known) or 'nothing'}"))
    problems += [Problem(path, f"{what} needs input '{name}'")
                 for name in schema.get("required", []) if name not in given]
    for name, value in given.items():
        if name in known and not _has_expression(value):
            wrong = _misfit(value, known[name])
            if wrong:
                problems.append(Problem(f"{path}.{name}", f"{what}'s parameter '{name}' takes {wrong}, "
                                                          f"not {_describe(value)}"))
    return problems


def _misfit(value: Any, schema: dict[str, Any]) -> str | None:
    """What ``schema`` (the subset ``script_inputs`` writes) wants, if ``value`` does not fit it."""
    if "anyOf" in schema:
        wants = [_misfit(value, option) for option in schema["anyOf"]]
        return None if None in wants else " or ".join(w for w in wants if w)
    if "enum" in schema and value not in schema["enum"]:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    kinds = schema.get("type")
    if kinds is None:
        return None
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not any(_is(value, kind) for kind in kinds):
        return " or ".join(_JSON_TYPES.get(kind, kind) for kind in kinds)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            wrong = _misfit(item, schema["items"])
            if wrong:
                return f"a list of {wrong.removeprefix('a ').removeprefix('an ')}s"
    return None


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return {"string": str, "boolean": bool, "array": list, "object": dict,
            "null": type(None)}.get(kind, object) is type(value) or (kind == "array" and isinstance(value, list))


def _describe(value: Any) -> str:
    kind = next((name for name in ("boolean", "integer", "number", "string", "array", "object", "null")
                 if _is(value, name)), "this value")
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{_JSON_TYPES[kind]} ({shown})" if kind in _JSON_TYPES else shown


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return "${{" in value
    if isinstance(value, dict):
        return any(_has_expression(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_expression(v) for v in value)
    return False


