"""What a code step's code says, checked against the step before anything runs (pure).

A Python, JavaScript or TypeScript step's ``main`` is read as a saved script's is (``script_inputs``):
the code must parse and define ``main``, the step's ``with`` must name only parameters
``main`` takes and give every one it needs, and a literal ``with`` value must fit the
parameter's type hint. Values written as expressions are known only at run time and are
checked then.
"""
from __future__ import annotations

import ast
import datetime as dt
from typing import Any

from orchestrator.definitions.flow import Flow
from orchestrator.definitions.script_inputs import infer_schema
from orchestrator.definitions.steps import JavaScriptStep, PythonStep, TypeScriptStep
from orchestrator.errors import Problem, ValidationError, did_you_mean, join_path

_JSON_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "null"}


def check_step_code(flow: Flow) -> list[Problem]:
    """Every problem in the code of ``flow``'s Python, JavaScript and TypeScript steps and their ``with``."""
    problems: list[Problem] = []
    for step, parts in flow.walk():
        path = join_path(*parts)
        if isinstance(step, PythonStep):
            language, code = "python", step.python
        elif isinstance(step, JavaScriptStep):
            language, code = "javascript", step.javascript
        elif isinstance(step, TypeScriptStep):
            language, code = "typescript", step.typescript
        else:
            continue
        if language == "python" and not _defines_main_plainly(code):
            if _binds_main(code):
                continue  # main is made some other way (assigned, imported, under an if): checked at run time
        try:
            schema = infer_schema(language, code)
        except ValidationError as exc:
            problems += [Problem(f"{path}.{language}{p.path.removeprefix('code')}", p.message) for p in exc.problems]
            continue
        except (RecursionError, MemoryError):
            problems.append(Problem(f"{path}.{language}", "the code nests too deeply to be read; split it up"))
            continue
        problems += check_arguments(schema, step.with_, f"{path}.with", "main")
    return problems


def _tree(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # infer_schema names a syntax error with its place


def _defines_main_plainly(code: str) -> bool:
    tree = _tree(code)
    return tree is None or any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def _binds_main(code: str) -> bool:
    """Whether the module binds `main` some way other than a top-level def (an assignment,
    an import, a def under an if, try or with): the runtime calls any callable main."""
    tree = _tree(code)
    if tree is None:
        return False
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == "main":
            return True
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "main" for t in targets):
                return True
        if isinstance(node, ast.Import | ast.ImportFrom) and any(
                (alias.asname or alias.name.split(".")[0]) == "main" for alias in node.names):
            return True
        for field in ("body", "orelse", "finalbody", "handlers"):
            pending += [child for child in getattr(node, field, []) if isinstance(child, ast.stmt | ast.excepthandler)]
    return False


def check_arguments(schema: dict[str, Any], given: dict[str, Any], path: str, what: str,
                    typed: bool = True) -> list[Problem]:
    """``given`` (a step's ``with``) against the input ``schema`` of ``what`` (``main``, a
    script): unknown names, missing required ones, and unless not ``typed`` (Bash, whose
    variables take any value as text) literal values of the wrong type."""
    known = schema.get("properties", {})
    problems = []
    if not schema.get("additionalProperties", False):
        for name in given:
            if name not in known:
                problems.append(Problem(f"{path}.{name}", f"{what} takes no input '{name}'"
                                        f"{did_you_mean(name, known)}; it takes: {', '.join(known) or 'nothing'}"))
    problems += [Problem(path, f"{what} needs input '{name}'")
                 for name in schema.get("required", []) if name not in given]
    for name, value in given.items() if typed else ():
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
    if kind == "string" and isinstance(value, dt.date):
        return True  # YAML reads 2024-01-01 as a date; the stored document, and main, get the text
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
    pending = [value]  # iterative: a value nested thousands deep must not overflow the stack
    while pending:
        item = pending.pop()
        if isinstance(item, str) and "${{" in item:
            return True
        if isinstance(item, dict):
            pending += item.values()
        elif isinstance(item, list):
            pending += item
    return False


