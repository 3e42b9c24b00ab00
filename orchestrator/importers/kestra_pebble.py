"""Kestra's Pebble templates (``{{ inputs.x }}``, ``{{ outputs.t.value | upper }}``) as Millrace
``${{ }}`` expressions: the names Kestra gives a task rewritten to the ones Millrace gives a
step, Pebble's operators and filters to their Jinja forms. What has no Jinja form raises
:class:`Untranslatable` with the reason, for the task to become a failing step."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.definitions.expressions import compile_expression
from orchestrator.errors import ExpressionError

_TAG = re.compile(r"\{%.*?%\}", re.S)
_COMMENT = re.compile(r"\{#.*?#\}", re.S)
_PRINT = re.compile(r"\{\{-?(.*?)-?\}\}", re.S)
_TOKEN = re.compile(r"""\s+|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\d+(?:\.\d+)?|[A-Za-z_][A-Za-z0-9_]*"""
                    r"""|\?\?|==|!=|<=|>=|\.\.|[-+*/%<>()\[\]{},:.|~?!]""")
# Pebble filters with a Jinja filter of the same meaning (name -> Jinja's name).
FILTERS = {"upper": "upper", "lower": "lower", "trim": "trim", "title": "title", "capitalize": "capitalize",
           "length": "length", "first": "first", "last": "last", "join": "join", "default": "default",
           "abs": "abs", "reverse": "reverse", "sort": "sort", "keys": "list", "json": "tojson",
           "toJson": "tojson", "number": "float", "round": "round", "string": "string", "unique": "unique",
           "urlencode": "urlencode", "max": "max", "min": "min"}
# Pebble filters that are a method of the value in Jinja's sandbox.
METHODS = {"split": "split", "startsWith": "startswith", "endsWith": "endswith"}
ITERATION = "@iteration"  # in Names.outputs: the loop task the template is inside
STARTED = "@@taskrun.startDate@@"  # replaced by the step's code with the time it starts
_ALWAYS_BOOLEAN = re.compile(r"==|!=|<=|>=|<|>|\b(and|or|not|is|in|contains|equals)\b")


class Untranslatable(Exception):
    """A template with no Millrace form; the message says what and why."""


@dataclass
class Names:
    """How Kestra's names read in the place being translated.

    ``outputs``: a task id -> the expression of its result as seen here (``steps.t.result``,
    ``steps.par.result.t``); ``frames``: the flowable tasks around the task, outermost
    first, each ``(is a loop, its item read from a loop nested in it)``: Kestra's
    ``taskrun.value`` is the nearest loop's value, ``parents[N]`` the N+1th flowable task up."""

    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, Any] = field(default_factory=dict)
    constants: Mapping[str, Any] = field(default_factory=dict)  # flow.id, flow.namespace, labels.x, task.id
    frames: list[tuple[bool, Callable[[], str]]] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    kv: set[str] = field(default_factory=set)
    trigger: Callable[[list[str]], str] | None = None  # a trigger's path -> its Millrace form, where one reads it
    approximations: list[str] = field(default_factory=list)  # what the templates translated approximately
    runtime: bool = False  # the step's code replaces STARTED with the time it starts
    _depth: int = 0


def has_template(text: Any) -> bool:
    return isinstance(text, str) and ("{{" in text or "{%" in text)


def value(raw: Any, names: Names) -> Any:
    """A task property's value with every template in it made a Millrace expression."""
    if isinstance(raw, str):
        return text(raw, names)
    if isinstance(raw, list):
        return [value(v, names) for v in raw]
    if isinstance(raw, dict):
        return {k: value(v, names) for k, v in raw.items()}
    return raw


def text(raw: str, names: Names) -> str:
    """``'Hello {{ inputs.name }}'`` -> ``'Hello ${{ inputs.name }}'``."""
    _refuse_tags(raw)
    raw = _COMMENT.sub("", raw)
    return _PRINT.sub(lambda m: "${{ " + expression(m.group(1), names) + " }}", raw)


def rendered(raw: Any, names: Names, cast: str = "string") -> Any:
    """A value as Kestra renders it, text (or the ``cast`` filter's type): a template that is
    one expression would keep its type in Millrace."""
    if isinstance(raw, dict | list):
        return {k: rendered(v, names, cast) for k, v in raw.items()} if isinstance(raw, dict) else \
            [rendered(v, names, cast) for v in raw]
    if not isinstance(raw, str):
        return raw if cast != "string" or raw is None else str(raw).lower() if isinstance(raw, bool) else str(raw)
    converted = text(raw, names)
    if converted.startswith("${{") and converted.endswith("}}") and converted.count("${{") == 1:
        return "${{ (" + converted[3:-2].strip() + ") | " + cast + " }}"
    return converted


def as_expression(raw: Any, names: Names) -> str:
    """A whole value as one Jinja expression (the parts of a mixed string joined with ``~``)."""
    if not isinstance(raw, str):
        return repr(raw)
    _refuse_tags(raw)
    raw = _COMMENT.sub("", raw)
    parts: list[str] = []
    pos = 0
    for match in _PRINT.finditer(raw):
        if match.start() > pos:
            parts.append(repr(raw[pos:match.start()]))
        parts.append(f"({expression(match.group(1), names)})")
        pos = match.end()
    if pos < len(raw):
        parts.append(repr(raw[pos:]))
    if len(parts) == 1 and parts[0].startswith("("):
        return parts[0][1:-1]
    return " ~ ".join(parts) or "''"


def condition(raw: Any, names: Names) -> Any:
    """Kestra's truth of a rendered condition (not blank, not ``false``, not ``0``) as a
    Millrace condition; a comparison stays itself."""
    if isinstance(raw, bool):
        return raw
    expr = as_expression(raw, names)
    if isinstance(raw, str) and _PRINT.fullmatch(raw.strip()) and _ALWAYS_BOOLEAN.search(raw):
        return "${{ " + expr + " }}"
    return "${{ (" + expr + ") | string | lower not in ('', 'false', '0', 'none') }}"


def _refuse_tags(raw: str) -> None:
    tag = _TAG.search(raw)
    if tag:
        raise Untranslatable(f"the Pebble tag {tag.group(0)[:60]!r} has no Millrace form (expressions only)")


def expression(source: str, names: Names) -> str:
    """The inside of one ``{{ }}`` as the inside of a Millrace ``${{ }}``."""
    source = source.strip()
    for op, make in (("??", lambda a, b: f"({a}) | default({b})"),
                     ("?", lambda a, b: _ternary(a, b, names)),
                     ("contains", lambda a, b: f"({b}) in ({a})")):
        left, right = _split_top(source, op)
        if right is not None:
            if op == "?":
                return make(left, right)
            return make(expression(left, names), expression(right, names))
    out = _rewrite(_tokens(source), names)
    try:
        compile_expression(out)
    except ExpressionError as exc:
        raise Untranslatable(f"{{{{ {source} }}}} has no Jinja form: {exc}") from None
    return out


def _ternary(cond: str, rest: str, names: Names) -> str:
    then, otherwise = _split_top(rest, ":")
    if otherwise is None:
        raise Untranslatable(f"'? {rest}' is a ternary without ':'")
    return f"(({expression(then, names)}) if ({expression(cond, names)}) else ({expression(otherwise, names)}))"


def _tokens(source: str) -> list[str]:
    tokens, pos = [], 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise Untranslatable(f"{{{{ {source} }}}}: cannot read {source[pos:pos + 20]!r}")
        tokens.append(match.group(0))
        pos = match.end()
    return tokens


def _split_top(source: str, op: str) -> tuple[str, str | None]:
    """``source`` split at the first ``op`` outside brackets and strings."""
    depth = 0
    tokens = _tokens(source)
    pos = 0
    for token in tokens:
        if token in "([{" and token:
            depth += 1
        elif token in ")]}" and token:
            depth -= 1
        elif depth == 0 and token == op:
            return source[:pos], source[pos + len(token):]
        pos += len(token)
    return source, None


def _rewrite(tokens: list[str], names: Names) -> str:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        previous = next((t for t in reversed(out) if not t.isspace()), "")
        if token == "|":
            i = _filter(tokens, i + 1, out)
            continue
        if re.match(r"[A-Za-z_]", token) and previous != ".":
            i = _name(tokens, i, names, out)
            continue
        if token == "(" and not re.match(r"[A-Za-z0-9_)\]]", previous[-1:] or " "):
            close = _closing(tokens, i)
            out.append("(" + expression("".join(tokens[i + 1:close]), names) + ")")
            i = close + 1
            continue
        if token == "!":
            token = " not "
        elif token == "..":
            raise Untranslatable("Pebble's range operator '..' has no Jinja form (use range())")
        out.append(token)
        i += 1
    return "".join(out).strip()


def _closing(tokens: list[str], i: int) -> int:
    """The index of the bracket closing ``tokens[i]``."""
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j] in "([{"
        depth -= tokens[j] in ")]}"
        if depth == 0:
            return j
    raise Untranslatable(f"an unclosed {tokens[i]!r}")


def _skip_space(tokens: list[str], i: int) -> int:
    while i < len(tokens) and tokens[i].isspace():
        i += 1
    return i


def _filter(tokens: list[str], i: int, out: list[str]) -> int:
    i = _skip_space(tokens, i)
    name = tokens[i] if i < len(tokens) else ""
    if name in METHODS:
        out.append(f".{METHODS[name]}")
        j = _skip_space(tokens, i + 1)
        if j >= len(tokens) or tokens[j] != "(":
            out.append("()")
        return i + 1
    if name == "replace":
        return _replace(tokens, i + 1, out)
    if name not in FILTERS:
        raise Untranslatable(f"the Pebble filter '{name}' has no Jinja equivalent")
    out.append(f"| {FILTERS[name]}" if out and out[-1].endswith(" ") else f" | {FILTERS[name]}")
    return i + 1


def _replace(tokens: list[str], i: int, out: list[str]) -> int:
    """Pebble's ``replace({'a': 'b'})`` -> Jinja's ``replace('a', 'b')`` for each pair."""
    i = _skip_space(tokens, i)
    j = i
    depth = 0
    while j < len(tokens):
        depth += tokens[j] == "(" or 0
        depth -= tokens[j] == ")" or 0
        j += 1
        if depth == 0:
            break
    inside = "".join(tokens[i + 1:j - 1]).strip()
    pairs = re.findall(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*:\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", inside)
    if not inside.startswith("{") or not pairs:
        raise Untranslatable("Pebble's replace() takes a literal map here; this one has no Jinja form")
    out.extend(f" | replace({a}, {b})" for a, b in pairs)
    return j


def _path(tokens: list[str], i: int) -> tuple[list[str], int]:
    """A dotted path from ``tokens[i]``: names and literal subscripts."""
    parts = [tokens[i]]
    i += 1
    while i < len(tokens):
        if tokens[i] == "." and i + 1 < len(tokens) and re.match(r"[A-Za-z_]", tokens[i + 1]):
            parts.append(tokens[i + 1])
            i += 2
        elif tokens[i] == "[" and i + 2 < len(tokens) and tokens[i + 2] == "]" and \
                re.fullmatch(r"'[^']*'|\"[^\"]*\"|\d+", tokens[i + 1]):
            literal = tokens[i + 1]
            parts.append(literal[1:-1] if literal[0] in "'\"" else literal)
            i += 3
        else:
            break
    return parts, i


def _name(tokens: list[str], i: int, names: Names, out: list[str]) -> int:
    word = tokens[i]
    if word in ("null", "none"):
        out.append("none")
        return i + 1
    if word in ("true", "false", "and", "or", "not", "is", "in", "if", "else", "defined", "empty"):
        if word == "empty":
            raise Untranslatable("Pebble's 'is empty' test has no Jinja form (compare its length)")
        out.append(word)
        return i + 1
    if word == "equals":
        out.append("==")
        return i + 1
    j = _skip_space(tokens, i + 1)
    if j < len(tokens) and tokens[j] == "(":
        return _function(tokens, i, j, names, out)
    parts, end = _path(tokens, i)
    out.append(_root(parts, names))
    if parts[0] == "outputs" and len(parts) == 2 and end < len(tokens) and tokens[end] == "[":
        close = _closing(tokens, end)
        inside = "".join(tokens[end + 1:close]).strip()
        if re.fullmatch(r"(parents?(\[\d+\])?\.)?taskrun\.value", inside):
            return close + 1  # this iteration's output: inside the loop, the step's own result
    return end


def _function(tokens: list[str], i: int, j: int, names: Names, out: list[str]) -> int:
    word = tokens[i]
    k = _skip_space(tokens, j + 1)
    literal = tokens[k] if k < len(tokens) else ""
    closing = _skip_space(tokens, k + 1)
    single = re.fullmatch(r"'[A-Za-z0-9_./-]+'|\"[A-Za-z0-9_./-]+\"", literal) and \
        closing < len(tokens) and tokens[closing] == ")"
    if word in ("secret", "kv") and single:
        name = literal[1:-1]
        key = re.sub(r"[^A-Za-z0-9_]", "_", name)
        (names.secrets if word == "secret" else names.kv).add(key)
        out.append(f"{'secrets' if word == 'secret' else 'vars'}.{key}")
        return closing + 1
    if word in ("json", "fromJson") and re.fullmatch(r"'[^']*'|\"[^\"]*\"", literal) and \
            closing < len(tokens) and tokens[closing] == ")":
        try:
            out.append(repr(json.loads(literal[1:-1])))
        except ValueError:
            raise Untranslatable(f"json({literal}) is not JSON") from None
        return closing + 1
    if word == "range":
        raise Untranslatable("Pebble's range() includes its end and Jinja's does not; rewrite it by hand")
    if word == "render" and names._depth < 5:
        out.append("")
        return j  # render(x) is x: variables are rendered where they are used
    raise Untranslatable(f"the Pebble function {word}() has no Millrace equivalent")


def _root(parts: list[str], names: Names) -> str:
    head, rest = parts[0], parts[1:]
    tail = "".join(f".{p}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) else f"[{_literal(p)}]" for p in rest[1:])
    if head == "inputs" and rest:
        name = names.inputs.get(rest[0], rest[0])
        return f"inputs.{name}{tail}"
    if head == "outputs" and rest:
        base = names.outputs.get(rest[0])
        if base == ITERATION and rest[1:] == ["iterationCount"]:
            names.approximations.append("iterationCount -> iteration (0 in the first iteration)")
            return "iteration"
        if base is None or base == ITERATION:
            raise Untranslatable(f"outputs.{rest[0]} names a task this flow does not have, or not before here")
        return base + tail
    if head == "vars" and rest:
        if rest[0] not in names.variables:
            raise Untranslatable(f"vars.{rest[0]} is not among the flow's variables")
        return f"({_variable(names.variables[rest[0]], names)}){tail}"
    if head == "taskrun" and rest[:1] == ["startDate"]:
        if not names.runtime:
            raise Untranslatable("taskrun.startDate is known only in a Log, Return, OutputValues or Fail task here")
        names.approximations.append("taskrun.startDate -> the time the step starts running its code")
        return repr(STARTED)
    if head == "taskrun" and rest[:1] == ["id"]:
        names.approximations.append("taskrun.id -> the run's id and the task's")
        return f"(run.id ~ '/' ~ {_literal(names.constants.get('task.id', ''))})"
    if head in ("taskrun", "parent", "parents"):
        return _loop_value(parts, names)
    if head == "execution" and rest[:1] == ["id"]:
        return "run.id"
    if head in ("flow", "labels", "task") and rest:
        key = f"{head}.{rest[0]}"
        if key in names.constants:
            return _literal(names.constants[key]) + tail
    if head == "trigger" and names.trigger is not None:
        return names.trigger(rest)
    raise Untranslatable(f"'{'.'.join(parts)}' has no Millrace equivalent here")


def _loop_value(parts: list[str], names: Names) -> str:
    """``taskrun.value``/``.iteration``, ``parent.taskrun.value``, ``parents[N].taskrun.value``:
    the value of the nearest loop around the task, or around its Nth flowable parent."""
    up = 0
    if parts[0] == "parent":
        up, parts = 1, parts[1:]
    elif parts[0] == "parents" and len(parts) > 1 and parts[1].isdigit():
        up, parts = int(parts[1]) + 1, parts[2:]
    if parts[:1] != ["taskrun"] or len(parts) < 2 or parts[1] not in ("value", "iteration"):
        raise Untranslatable(f"'{'.'.join(parts)}' has no Millrace equivalent (loop values and iterations only)")
    loops = [i for i, (is_loop, _) in enumerate(names.frames[:len(names.frames) - up]) if is_loop]
    if not loops:
        raise Untranslatable(f"{'parent ' * bool(up)}taskrun.{parts[1]} is read outside a ForEach")
    innermost = max(i for i, (is_loop, _) in enumerate(names.frames) if is_loop)
    if loops[-1] == innermost:
        return "item" if parts[1] == "value" else "index"
    if parts[1] == "iteration":
        raise Untranslatable("an outer loop's iteration number is not kept inside an inner loop")
    return names.frames[loops[-1]][1]()


def _variable(raw: Any, names: Names) -> str:
    if names._depth > 5:
        raise Untranslatable("variables refer to each other too deeply")
    names._depth += 1
    try:
        return as_expression(raw, names) if has_template(raw) else _literal(raw)
    finally:
        names._depth -= 1


def _literal(raw: Any) -> str:
    return repr(raw)
