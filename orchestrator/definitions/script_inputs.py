"""What a saved script's code tells about its inputs (pure).

A saved script is code at a path (``etl/clean``), versioned like flows. Its input schema is
read from the code itself, the way Windmill does it: Python from ``main``'s signature and
type hints, JavaScript/TypeScript from ``main``'s parameters, Bash from the variables it
reads but never sets, SQL from its ``%(name)s`` parameters. The schema is JSON Schema, so a
client can build a form from it and a flow's ``with`` can be checked against it.
"""
from __future__ import annotations

import ast
import json
import re
from typing import Any

from orchestrator.errors import Problem, ValidationError

# Only these survive from the worker's environment into a step's (a step must not inherit
# the worker's database or broker credentials): a Bash script reading them takes no input.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER")

LANGUAGES = ("python", "bash", "javascript", "typescript", "sql")


_PY_TYPES = {"int": "integer", "float": "number", "str": "string", "bool": "boolean",
             "list": "array", "tuple": "array", "dict": "object", "None": "null"}


_TS_TYPES = {"number": "number", "bigint": "integer", "string": "string", "boolean": "boolean", "object": "object",
             "null": "null", "Date": "string"}


def split_ref(ref: str) -> tuple[str, int | None]:
    """``etl/clean@3`` -> (``etl/clean``, 3); no ``@``: the version is None (the latest)."""
    path, _, version = ref.partition("@")
    return path, int(version) if version else None


def infer_schema(language: str, code: str) -> dict[str, Any]:
    """The JSON Schema of the inputs ``code`` takes; ValidationError naming the place if it
    cannot be read (a syntax error, no ``main``)."""
    if language == "python":
        return _python_schema(code)
    if language in ("javascript", "typescript"):
        return _javascript_schema(code)
    if language == "bash":
        return _schema({name: ({"type": "string"}, required) for name, required in _bash_inputs(code).items()})
    if language == "sql":
        names = dict.fromkeys(re.findall(r"%\((\w+)\)s", code))
        return _schema({name: ({}, True) for name in names})
    raise ValidationError([Problem("language", f"unknown language '{language}'; one of: {', '.join(LANGUAGES)}")])


def _schema(properties: dict[str, tuple[dict[str, Any], bool]], *, more: bool = False) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: prop for name, (prop, _) in properties.items()},
        "required": [name for name, (_, required) in properties.items() if required],
        "additionalProperties": more,
    }


def _python_schema(code: str) -> dict[str, Any]:
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        where = f"line {exc.lineno}, column {exc.offset}" if exc.offset else f"line {exc.lineno}"
        raise ValidationError([Problem(f"code ({where})", f"Python syntax error: {exc.msg}")]) from None
    except (RecursionError, MemoryError, ValueError):
        raise ValidationError([Problem("code", "the code nests too deeply to be read; split it up")]) from None
    main = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"), None)
    if main is None:
        raise ValidationError([Problem("code", "a Python script defines a top-level `def main(...)`")])
    args = main.args
    if args.posonlyargs:
        raise ValidationError([Problem(f"code (line {main.lineno})",
                                       "main's parameters are passed by name; drop the `/`")])
    positional = args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = list(zip(positional, defaults, strict=True)) + list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    properties = {}
    for arg, default in params:
        prop = _py_annotation(arg.annotation)
        if default is not None:
            try:
                prop = {**prop, "default": ast.literal_eval(default)}
            except Exception:  # noqa: BLE001 - any default literal_eval cannot read: computed, optional
                pass
        properties[arg.arg] = (prop, default is None)
    return _schema(properties, more=args.kwarg is not None)


def _py_annotation(node: ast.expr | None) -> dict[str, Any]:
    """JSON Schema for a type hint; an unknown or missing hint accepts anything."""
    if node is None:
        return {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a hint in quotes
        try:
            return _py_annotation(ast.parse(node.value, mode="eval").body)
        except SyntaxError:
            return {}
    if isinstance(node, ast.Constant) and node.value is None:
        return {"type": "null"}
    if isinstance(node, ast.Name | ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        return {"type": _PY_TYPES[name]} if name in _PY_TYPES else {}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _any_of([_py_annotation(node.left), _py_annotation(node.right)])
    if isinstance(node, ast.Subscript):
        base = node.value.id if isinstance(node.value, ast.Name) else getattr(node.value, "attr", "")
        inner = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Optional":
            return _any_of([_py_annotation(inner[0]), {"type": "null"}])
        if base == "Union":
            return _any_of([_py_annotation(x) for x in inner])
        if base == "Literal":
            try:
                return {"enum": [ast.literal_eval(x) for x in inner]}  # -1 too, which is not an ast.Constant
            except Exception:  # noqa: BLE001 - a member that is not a literal: any value
                return {}
        if base in ("list", "List", "Sequence", "set", "Set", "tuple", "Tuple") and inner:
            items = _py_annotation(inner[0])
            return {"type": "array", **({"items": items} if items and base not in ("tuple", "Tuple") else {})}
        if base in ("dict", "Dict", "Mapping") and len(inner) == 2:
            values = _py_annotation(inner[1])
            return {"type": "object", **({"additionalProperties": values} if values else {})}
        return _py_annotation(node.value)
    return {}


def _any_of(options: list[dict[str, Any]]) -> dict[str, Any]:
    if any(not option for option in options):
        return {}  # one side accepts anything, so the union does
    types = [option.get("type") for option in options]
    if all(isinstance(t, str) and len(option) == 1 for t, option in zip(types, options, strict=True)):
        return {"type": list(dict.fromkeys(types))}
    return {"anyOf": options}


_JS_MAIN = re.compile(r"(?:^|[\n;])\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?function\s+main\s*\(([^)]*)\)")


_JS_ARROW = re.compile(
    r"(?:^|\n)\s*(?:export\s+)?(?:const|let|var)\s+main\s*=\s*(?:async\s*)?\(([^)]*)\)\s*(?::[^=]*)?=>")


def _javascript_schema(code: str) -> dict[str, Any]:
    found = _JS_MAIN.search(code) or _JS_ARROW.search(code)
    if found is None:
        raise ValidationError([Problem("code", "a JavaScript script defines `function main(...)` "
                                               "(or `export async function main(...)`)")])
    properties = {}
    for raw in _split_top_level(found.group(1)):
        name, _, default = raw.partition("=")
        name, _, hint = name.partition(":")
        name = name.strip()
        optional = name.endswith("?")
        name = name.rstrip("?")
        if not name:
            continue
        if not re.fullmatch(r"[A-Za-z_$][A-Za-z0-9_$]*", name):
            line = code.count("\n", 0, found.start(1)) + 1
            raise ValidationError([Problem(f"code (line {line})",
                                           f"main's parameter `{name}` cannot be matched by name; "
                                           "use plain named parameters")])
        prop = _ts_type(hint.strip())
        if default.strip():
            literal = _js_literal(default.strip())
            if literal is not _UNKNOWN:
                prop["default"] = literal
        properties[name] = (prop, not default.strip() and not optional)
    return _schema(properties)


def keep_optional(javascript: str, typescript: str) -> str:
    """``javascript`` (transpiled from ``typescript``) with ``main``'s optional parameters
    (``loud?: boolean``), which lose their ``?`` in JavaScript, given ``= undefined``: so
    reading the JavaScript's ``main`` finds them optional too."""
    try:
        schema = _javascript_schema(typescript)
    except ValidationError:
        return javascript  # no main to read: the step's checks say so
    optional = set(schema["properties"]) - set(schema["required"])
    found = _JS_MAIN.search(javascript) or _JS_ARROW.search(javascript)
    if not optional or found is None:
        return javascript
    params = [f"{raw} = void 0" if raw in optional else raw for raw in _split_top_level(found.group(1))]
    return javascript[:found.start(1)] + ", ".join(params) + javascript[found.end(1):]


def _ts_type(hint: str) -> dict[str, Any]:
    """JSON Schema for a TypeScript parameter type; one this cannot read accepts anything."""
    options = _split_top_level(hint, "|")
    if len(options) > 1:
        literals = [_js_literal(option) for option in options]
        if all(literal is not _UNKNOWN for literal in literals):
            return {"enum": literals}
        return _any_of([_ts_type(option) for option in options])
    if hint.endswith("[]") or hint.startswith(("Array<", "ReadonlyArray<")):
        inner = hint[:-2] if hint.endswith("[]") else hint[hint.index("<") + 1:-1]
        items = _ts_type(inner.strip().strip("()"))
        return {"type": "array", **({"items": items} if items else {})}
    if hint.startswith(("{", "Record<")):
        return {"type": "object"}
    literal = _js_literal(hint) if hint[:1] in "\"'-0123456789" or hint in ("true", "false") else _UNKNOWN
    if literal is not _UNKNOWN:
        return {"enum": [literal]}
    return {"type": _TS_TYPES[hint]} if hint in _TS_TYPES else {}


_UNKNOWN = object()


def _js_literal(text: str) -> Any:
    try:
        return json.loads(text.replace("'", '"'))
    except ValueError:
        return _UNKNOWN


def _split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` where it is not nested in brackets, braces or angle brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


_BASH_READ = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


_BASH_FALLBACK = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?[-=]")


_BASH_SET = re.compile(r"(?:^|[\s;(])(?:(?:local|export|declare|readonly)\s+(?:-\w+\s+)*)?([A-Za-z_][A-Za-z0-9_]*)\+?=")


_BASH_LOOP = re.compile(r"\b(?:for|read(?:\s+-\w+)*)\s+([A-Za-z_][A-Za-z0-9_ ]*?)(?:\s+in\b|\s*;|\s*$)", re.M)


_BASH_GIVEN = frozenset({*INHERITED_ENV, "PWD", "OLDPWD", "RANDOM", "LINENO", "SECONDS", "BASH", "IFS",
                         "HOSTNAME", "UID", "EUID", "PPID", "SHELL", "OSTYPE", "REPLY", "PIPESTATUS",
                         "BASH_SOURCE", "FUNCNAME", "BASHPID", "SHLVL"})


def _bash_inputs(code: str) -> dict[str, bool]:
    """Variables the script reads but never sets (those its ``with`` provides), each with
    whether it is required: ``${name:-fallback}`` makes it optional."""
    code = re.sub(r"(?m)(^|\s)#.*$", r"\1", code)  # comments (not `$#` nor `${#x}`)
    code = re.sub(r"'[^']*'", "''", code)  # single quotes do not expand
    assigned = set(_BASH_SET.findall(code))
    for names in _BASH_LOOP.findall(code):
        assigned.update(names.split())
    optional = set(_BASH_FALLBACK.findall(code))
    return {name: name not in optional for name in dict.fromkeys(_BASH_READ.findall(code))
            if name not in assigned and name not in _BASH_GIVEN and not name.startswith("MILLRACE_")}
