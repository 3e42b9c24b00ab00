"""Text to a validated :class:`~orchestrator.flow.Flow`: safe YAML/JSON loading, typed
validation, then the checks across steps in ``validation.py``."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import pydantic
import yaml

from orchestrator.definitions.flow import Flow
from orchestrator.definitions.steps import KINDS
from orchestrator.definitions.validation import check_flow
from orchestrator.errors import Problem, ValidationError, did_you_mean, join_path

MAX_DOCUMENT_BYTES = 1 << 20
MAX_NODES = 50_000  # values in a document: far past what 2,000 steps need, and cheap to load
MAX_STEPS = 2_000  # steps in a flow, nested ones included


class _Refused(ValueError):
    """What the loaders refuse, with where (``line``/``column`` when known)."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None):
        super().__init__(problem)
        self.problem, self.line, self.column = problem, line, column


def _check_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Refused(f"duplicate key '{key}'")
        seen.add(key)
    return dict(pairs)


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when it is installed


class _StrictLoader(_Base):  # type: ignore[misc, valid-type]
    """A safe loader that refuses duplicate keys and mappings as keys (anchors and aliases
    are refused by the scan before it, :func:`_scan`)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: set[Any] = set()
        node.value = [(_text_key(key_node), value) for key_node, value in node.value]
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                raise _Refused("mapping keys must be plain values", *_mark(key_node))
            if key in seen:
                raise _Refused(f"duplicate key '{key}'", *_mark(key_node))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _text_key(node: Any) -> Any:
    """A plain key YAML 1.1 reads as a boolean (`on`, `off`, `yes`, `no`) kept as the text it
    is: a `postgres:` trigger's `on: [insert]` is the key "on", not True."""
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool" and not node.style:
        return yaml.ScalarNode("tag:yaml.org,2002:str", node.value, node.start_mark, node.end_mark)
    return node


def _mark(node: Any) -> tuple[int | None, int | None]:
    mark = getattr(node, "start_mark", None)
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


def _scan(text: str) -> None:
    """Walk the YAML's events once, before building anything: refuse anchors and aliases
    (alias bombs) and documents past MAX_NODES values, as soon as they appear."""
    nodes = 0
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused("anchors and aliases (&, *) are not allowed in flows", *_mark(event))
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise _Refused(f"the document holds more than {MAX_NODES:,} values; a flow has at most "
                               f"{MAX_STEPS:,} steps", *_mark(event))


def load_document(text: str | bytes, content_type: str | None = None) -> Any:
    """Parse YAML or JSON text safely; JSON when ``content_type`` says so or text starts with ``{``.

    Both refuse duplicate keys (the stored document would keep one value and the source
    show both); YAML also anchors and aliases, and a document past MAX_NODES values."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_DOCUMENT_BYTES:
        raise ValidationError(
            [Problem("", f"document is {size} bytes; the limit is {MAX_DOCUMENT_BYTES} bytes")]
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError([Problem("", f"document is not UTF-8: {exc}")]) from None
    as_json = (content_type or "").endswith("json") or text.lstrip().startswith("{")
    kind = "JSON" if as_json else "YAML"
    try:
        if as_json:
            data = json.loads(text, object_pairs_hook=_check_keys)
        else:
            _scan(text)
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader
        check_storable(data)
    except RecursionError:
        raise ValidationError([Problem("", "the document nests too deeply")]) from None
    except json.JSONDecodeError as exc:
        raise ValidationError(
            [Problem("", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]
        ) from None
    except _Refused as exc:
        where = f" at line {exc.line}, column {exc.column}" if exc.line is not None else ""
        raise ValidationError([Problem("", f"invalid {kind}{where}: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        lines = text.splitlines() if isinstance(text, str) else []
        line = lines[mark.line] if mark and mark.line < len(lines) else ""
        hint = _yaml_hint(problem, line)
        raise ValidationError([Problem("", f"invalid YAML at {where}{problem}{hint}")]) from None
    return data


# The common mistakes behind PyYAML's (and libyaml's) messages, said as the fix.
_LINE_UP = (" (this line does not line up with the ones above: the keys of one mapping, and the '- ' "
            "of one list's items, start in the same column)")
YAML_HINTS = {
    "mapping values are not allowed": (" (a value containing ': ' must be quoted, e.g. summary: \"a: b\"; "
                                       "or this key is indented deeper than the keys beside it)"),
    "did not find expected key": _LINE_UP,
    "expected <block end>, but found": _LINE_UP,
    "did not find expected '-' indicator": _LINE_UP,
    "could not find expected ':'": " (a key needs ': ' after it, with a space after the colon)",
    "found undefined alias": " (an unquoted '*' starts an alias: quote the value, e.g. cron: \"* * * * *\")",
    "found character that cannot start any token": " (a tab? YAML indents with spaces, never tabs)",
}


def _yaml_hint(problem: str, line: str) -> str:
    if "\t" in line[:len(line) - len(line.lstrip())]:
        return " (YAML indents with spaces, never tabs)"
    if re.match(r"\s*-[^\s-]", line):
        return " (a list item needs a space after its '-': `- id: ...`)"
    return next((text for start, text in YAML_HINTS.items() if problem.startswith(start)), "")


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def check_storable(data: Any) -> None:
    """Refuse what JSON allows but the database cannot keep: NUL characters, lone UTF-16
    surrogates, NaN and infinities; the error names every place."""
    problems = list(_unstorable(data, ()))
    if problems:
        raise ValidationError(problems[:20])


def _unstorable(data: Any, path: tuple[Any, ...]) -> Iterator[Problem]:
    if isinstance(data, str):
        if "\x00" in data:
            yield Problem(join_path(*path), "text cannot contain NUL (\\u0000) characters")
        elif LONE_SURROGATE.search(data):
            yield Problem(join_path(*path), "text cannot contain lone UTF-16 surrogates")
    elif isinstance(data, float) and not math.isfinite(data):
        yield Problem(join_path(*path), f"{data} is not a number JSON can keep")
    elif isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and ("\x00" in key or LONE_SURROGATE.search(key)):
                yield Problem(join_path(*path), f"key {key!r} contains a NUL or a lone surrogate")
            yield from _unstorable(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _unstorable(value, (*path, i))


def parse_flow(text: str | bytes, content_type: str | None = None) -> Flow:
    """Parse, validate and check a flow document; raises ValidationError listing every problem."""
    return flow_from_data(load_document(text, content_type))


def flow_from_data(data: Any) -> Flow:
    """Validate already-loaded data into a checked Flow."""
    if not isinstance(data, dict):
        raise ValidationError([Problem("", "a flow document must be a mapping with id and steps")])
    try:
        flow = Flow.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError(problems_from(exc, Flow)) from None
    count = sum(1 for _ in flow.walk())
    if count > MAX_STEPS:
        raise ValidationError([Problem("steps", f"the flow has {count:,} steps; at most {MAX_STEPS:,} (split it "
                                                "into subflows)")])
    problems = check_flow(flow)
    if problems:
        raise ValidationError(problems)
    return flow


def flow_from_stored(document: dict[str, Any]) -> Flow:
    """The Flow of a stored document: checked when it was saved, so only built as models."""
    return Flow.model_validate(document)


def problems_from(exc: pydantic.ValidationError, root: type[pydantic.BaseModel] | None = None) -> list[Problem]:
    """pydantic's errors as Problems: JSON paths and plain messages (with the known fields of
    the place an unknown one is in, when ``root`` is the model that was validated)."""
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        parts = _without_kind_tags(error["loc"])
        model = _model_at(root, error["loc"][:-1]) if root is not None and error["type"] == "extra_forbidden" else None
        problem = Problem(join_path(*parts), _message(error, parts, model))
        if problem not in problems:
            problems.append(problem)
    return problems


# What a mapping in each place looks like, for "expected a mapping" (by the key it is under).
SHAPES = {
    "retry": "retry: {attempts: 3, delay: 10s}",
    "approval": "approval: {description: Ship it?, timeout: 24h}, or just approval: {}",
    "with": 'with: {name: "${{ inputs.name }}"}: each argument by name',
    "cache": "cache: 1h, or cache: {ttl: 1h}",
    "limits": "limits: {memory: 512MiB, cpu: 60s}",
    "concurrency": "concurrency: {limit: 1}",
    "inputs": "inputs: {n: {type: integer, default: 1}}",
    "items": "items: {type: string}",
}
# What people write for an input type, and what JSON Schema calls it.
_TYPE_NAMES = {"int": "integer", "str": "string", "float": "number", "bool": "boolean", "list": "array",
               "dict": "object", "text": "string", "double": "number", "number": "number"}


def _model_at(root: Any, loc: tuple[Any, ...]) -> Any:
    """The model class the place ``loc`` (pydantic's, union tags included) is inside."""
    from orchestrator.definitions.events import EVENT_MODELS
    from orchestrator.definitions.triggers import CronTrigger, FlowTrigger

    current, under = root, ""
    for i, part in enumerate(loc):
        if isinstance(part, int) or current is None:
            continue
        if i > 0 and isinstance(loc[i - 1], int):  # a union's tag right after a list index
            tagged = {"cron": CronTrigger, "flow": FlowTrigger, **EVENT_MODELS} if under == "triggers" else KINDS
            if part in tagged:
                current = tagged[part]
                continue
        fields = {field.alias or name: field for name, field in current.model_fields.items()}
        if part not in fields:
            return None
        current, under = _inner_model(fields[part].annotation), str(part)
    return current


def _inner_model(annotation: Any) -> Any:
    """The model a field holds, through lists, dicts, optionals and the step union."""
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _message(error: dict[str, Any], parts: list[Any] | None = None, model: Any = None) -> str:
    """pydantic's error in plain words; ``model``: the model an unknown field was found in."""
    kind, msg = error["type"], error["msg"]
    parts = parts or []
    key = next((p for p in reversed(parts) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        if model is not None:
            known = [field.alias or name for name, field in model.model_fields.items()]
            return f"unknown field{did_you_mean(str(parts[-1]), known)}; known here: {', '.join(known)}"
        return "unknown field"
    if kind == "missing":
        return "required field missing"
    if kind in ("union_tag_not_found", "union_tag_invalid", "model_attributes_type"):
        return "a step must be a mapping with an id and exactly one kind"
    if kind == "model_type" or kind == "dict_type":
        shape = SHAPES.get(str(key))
        return f"expected a mapping, e.g. {shape}" if shape else "expected a mapping"
    if kind == "list_type":
        return "expected a list, e.g. [a, b] or one `- item` per line"
    if kind == "literal_error" and key == "type" and isinstance(error.get("input"), str):
        meant = _TYPE_NAMES.get(error["input"].lower())
        return msg + (f"; did you mean '{meant}'" if meant else "")
    if kind == "literal_error" and isinstance(error.get("input"), str):
        expected = re.findall(r"'([^']*)'", msg)
        return msg + did_you_mean(error["input"], expected)
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        return f"'{error.get('input')}' is not allowed here (must match {pattern})"
    if kind == "too_short":
        return "must not be empty"
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


_TRIGGER_TAGS = ("cron", "amqp", "mqtt", "nats", "redis", "postgres")  # the trigger kinds no step kind shares


def _without_kind_tags(loc: tuple[Any, ...]) -> list[Any]:
    # pydantic puts the union member's tag right after a step's (or trigger's) list index: drop it.
    # Never the last part: there it is a key of the document (a `bash:` where it does not belong).
    return [
        part
        for i, part in enumerate(loc)
        if not ((part in KINDS or part in _TRIGGER_TAGS) and 0 < i < len(loc) - 1 and isinstance(loc[i - 1], int))
    ]
