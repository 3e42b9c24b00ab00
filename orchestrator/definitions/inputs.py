"""A flow's inputs: checking declarations, and checking and completing the values a run gets."""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from orchestrator.definitions.flow import InputSpec
from orchestrator.errors import Problem, ValidationError

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def check_input_specs(specs: Mapping[str, InputSpec]) -> Iterator[Problem]:
    """Problems in the declarations themselves (a default that breaks its own type)."""
    for name, spec in specs.items():
        if not spec.required:
            if spec.default is not None:
                yield from _check(spec, spec.default, f"inputs.{name}.default")
        if spec.format and spec.type != "string":
            yield Problem(f"inputs.{name}.format", "format applies to string inputs only")
        if spec.items and spec.type != "array":
            yield Problem(f"inputs.{name}.items", "items applies to array inputs only")


def validate_inputs(specs: Mapping[str, InputSpec], given: Mapping[str, Any]) -> dict[str, Any]:
    """The complete inputs of a run: ``given`` checked against ``specs``, defaults filled in."""
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for name in given:
        if name not in specs:
            known = ", ".join(specs) or "none"
            problems.append(Problem(f"inputs.{name}", f"unknown input (this flow takes: {known})"))
    for name, spec in specs.items():
        if name in given:
            found = list(_check(spec, given[name], f"inputs.{name}"))
            problems.extend(found)
            values[name] = given[name]
        elif spec.required:
            problems.append(Problem(f"inputs.{name}", f"required input missing ({spec.type})"))
        else:
            values[name] = spec.default
    if problems:
        raise ValidationError(problems)
    return values


def parse_text_inputs(specs: Mapping[str, InputSpec], pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs from a command line, each value read as its input's type."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            problems.append(Problem("inputs", f"'{pair}' is not key=value"))
            continue
        spec = specs.get(key)
        kind = spec.type if spec else "string"
        if kind == "string":
            values[key] = text
            continue
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            problems.append(Problem(f"inputs.{key}", f"'{text}' is not a valid {kind}"))
    if problems:
        raise ValidationError(problems)
    return values


def _check(spec: InputSpec, value: Any, where: str) -> Iterator[Problem]:
    expected = _PY_TYPES[spec.type]
    if isinstance(value, bool) and spec.type != "boolean" or not isinstance(value, expected):
        yield Problem(where, f"expected {spec.type}, got {_type_name(value)}")
        return
    if spec.enum is not None and value not in spec.enum:
        yield Problem(where, f"must be one of {', '.join(json.dumps(v) for v in spec.enum)}")
    if spec.minimum is not None and isinstance(value, int | float) and value < spec.minimum:
        yield Problem(where, f"must be at least {spec.minimum:g}")
    if spec.maximum is not None and isinstance(value, int | float) and value > spec.maximum:
        yield Problem(where, f"must be at most {spec.maximum:g}")
    if spec.format and isinstance(value, str):
        problem = _format_problem(spec.format, value)
        if problem:
            yield Problem(where, problem)
    if spec.items is not None and isinstance(value, list):
        for i, item in enumerate(value):
            yield from _check(spec.items, item, f"{where}[{i}]")


def _format_problem(fmt: str, value: str) -> str | None:
    try:
        if fmt == "date":
            dt.date.fromisoformat(value)
        elif fmt == "date-time":
            dt.datetime.fromisoformat(value)
    except ValueError:
        return f"'{value}' is not a {fmt} (ISO 8601, e.g. 2026-01-31{'T06:00:00Z' if fmt == 'date-time' else ''})"
    if fmt == "email" and not _EMAIL.match(value):
        return f"'{value}' is not an email address"
    if fmt == "uri" and not _URI.match(value):
        return f"'{value}' is not a URI"
    return None


def _type_name(value: Any) -> str:
    for name, types in _PY_TYPES.items():
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, types) and name != "number":
            return name
    return "null" if value is None else type(value).__name__
