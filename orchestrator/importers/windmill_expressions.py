"""Windmill's JavaScript input expressions as Millrace ``${{ }}`` expressions (pure).

Windmill evaluates ``input_transforms`` of type ``javascript`` (``flow_input.x``,
``results.a.b``, ``flow_input.iter.value``, template literals, operators) in a JavaScript
sandbox. The subset that has a Jinja form is parsed here (a small Pratt parser) and written
as Jinja; anything else raises :class:`Untranslatable` saying what and why.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field


class Untranslatable(Exception):
    """A construct with no Millrace counterpart; the message says which and why."""


@dataclass
class ExprScope:
    """What the names of a Windmill expression mean where it is written."""

    results: dict[str, str] = field(default_factory=dict)  # module id -> Jinja for its result
    previous: str | None = None  # Jinja for `previous_result`, or None where it has no counterpart
    in_loop: bool = False  # inside a forloopflow body: flow_input.iter is item/index
    resume: str | None = None  # Jinja for `resume` (the approval's values)
    error: bool = False  # in the failure module: `error` is the run's error
    result: bool = False  # in stop_after_if / skip_if: `result` is the step's own result
    variable: Callable[[str], str] | None = None  # `variable('path')` -> Jinja (vars.x or secrets.x)


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<template>`(?:[^`\\]|\\.)*`)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||\?\?|\?\.|=>|\.\.\.|[-+*/%<>!?:.,()\[\]{}])
""", re.X | re.S)

_BINARY = {  # JavaScript operator -> (binding power, Jinja operator)
    "??": (1, None), "||": (2, "or"), "&&": (3, "and"),
    "==": (6, "=="), "===": (6, "=="), "!=": (6, "!="), "!==": (6, "!="),
    "<": (7, "<"), "<=": (7, "<="), ">": (7, ">"), ">=": (7, ">="),
    "+": (9, "+"), "-": (9, "-"), "*": (10, "*"), "/": (10, "/"), "%": (10, "%"),
}
_CONSTANTS = {"true": "true", "false": "false", "null": "none", "undefined": "none"}
# Methods with a Jinja filter or test of the same meaning: name -> (arguments, builder).
_METHODS: dict[str, tuple[int, Callable[[str, list[str]], str]]] = {
    "toUpperCase": (0, lambda o, a: f"({o} | upper)"),
    "toLowerCase": (0, lambda o, a: f"({o} | lower)"),
    "trim": (0, lambda o, a: f"({o} | trim)"),
    "toString": (0, lambda o, a: f"({o} | string)"),
    "join": (1, lambda o, a: f"({o} | join({a[0]}))"),
    "includes": (1, lambda o, a: f"({a[0]} in {o})"),
    "startsWith": (1, lambda o, a: f"{o}.startswith({a[0]})"),
    "endsWith": (1, lambda o, a: f"{o}.endswith({a[0]})"),
    "split": (1, lambda o, a: f"{o}.split({a[0]})"),
    "replace": (2, lambda o, a: f"{o}.replace({a[0]}, {a[1]})"),
}
_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "JSON.stringify": lambda a: f"({a} | tojson)",
    "String": lambda a: f"({a} | string)",
    "Number": lambda a: f"({a} | float)",
    "parseInt": lambda a: f"({a} | int)",
    "parseFloat": lambda a: f"({a} | float)",
    "Boolean": lambda a: f"(true if {a} else false)",
    "Math.abs": lambda a: f"({a} | abs)",
    "Math.round": lambda a: f"({a} | round | int)",
    "Math.floor": lambda a: f"({a} | round(0, 'floor') | int)",
    "Math.ceil": lambda a: f"({a} | round(0, 'ceil') | int)",
    "Object.keys": lambda a: f"({a} | list)",
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(source: str) -> list[_Token]:
    tokens, at = [], 0
    while at < len(source):
        found = _TOKEN.match(source, at)
        if found is None:
            raise Untranslatable(f"the expression `{source}` has `{source[at]}` at {at}, which this import "
                                 "does not read")
        at = found.end()
        if found.lastgroup != "space":
            tokens.append(_Token(found.lastgroup or "", found.group()))
    return [*tokens, _Token("end", "")]


class _Parser:
    """JavaScript expression -> Jinja text; ``_path`` keeps a member chain unresolved until its
    root (``results``, ``flow_input``) says what it is."""

    def __init__(self, source: str, scope: ExprScope):
        self.source, self.scope = source, scope
        self.tokens = _tokens(source)
        self.at = 0

    def parse(self) -> str:
        out = self.expression(0)
        if self.peek.kind != "end":
            raise self.refuse(f"`{self.peek.text}`")
        return out

    @property
    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self, text: str | None = None) -> _Token:
        token = self.tokens[self.at]
        if text is not None and token.text != text:
            raise self.refuse(f"`{token.text or 'the end'}` where `{text}` was expected")
        self.at += 1
        return token

    def refuse(self, what: str) -> Untranslatable:
        return Untranslatable(f"{what} in `{self.source}` has no Jinja form in this import")

    def expression(self, power: int) -> str:
        left = self.unary()
        while True:
            token = self.peek
            if token.text == "?" and power == 0:
                self.take()
                then = self.expression(0)
                self.take(":")
                other = self.expression(0)
                left = f"({then} if {left} else {other})"
                continue
            if token.text not in _BINARY or _BINARY[token.text][0] <= power:
                return left
            self.take()
            bind, jinja = _BINARY[token.text]
            right = self.expression(bind)
            if token.text == "??":
                left = f"({left} if {left} is not none else {right})"
            elif token.text == "+" and ("'" in left[:1] or "'" in right[:1] or '"' in left[:1] or '"' in right[:1]):
                left = f"({left} ~ {right})"  # JavaScript joins a string and anything as text
            else:
                left = f"({left} {jinja} {right})"

    def unary(self) -> str:
        token = self.peek
        if token.text == "!":
            self.take()
            return f"(not {self.unary()})"
        if token.text == "-":
            self.take()
            return f"(-{self.unary()})"
        return self.postfix(self.primary())

    def primary(self) -> str | list[str]:
        token = self.take()
        if token.kind == "number":
            return token.text
        if token.kind == "string":
            return _quote(json.loads(token.text) if token.text[0] == '"' else _single(token.text))
        if token.kind == "template":
            return self.template(token.text[1:-1])
        if token.text == "(":
            inner = self.expression(0)
            self.take(")")
            return inner
        if token.text == "[":
            items = self.items("]")
            return "[" + ", ".join(items) + "]"
        if token.text == "{":
            return self.object()
        if token.kind == "name":
            if token.text in _CONSTANTS:
                return _CONSTANTS[token.text]
            return [token.text]  # a member chain, resolved in postfix
        raise self.refuse(f"`{token.text or 'the end'}`")

    def items(self, closing: str) -> list[str]:
        items: list[str] = []
        while self.peek.text != closing:
            if self.peek.text == "...":
                raise self.refuse("spread `...`")
            items.append(self.expression(0))
            if self.peek.text != closing:
                self.take(",")
        self.take(closing)
        return items

    def object(self) -> str:
        pairs = []
        while self.peek.text != "}":
            key = self.take()
            if key.kind not in ("name", "string"):
                raise self.refuse(f"the object key `{key.text}`")
            name = key.text if key.kind == "name" else json.loads(key.text) if key.text[0] == '"' else _single(key.text)
            if self.peek.text == ":":
                self.take(":")
                pairs.append(f"{_quote(name)}: {self.expression(0)}")
            else:
                pairs.append(f"{_quote(name)}: {self.resolve([name])}")
            if self.peek.text != "}":
                self.take(",")
        self.take("}")
        return "{" + ", ".join(pairs) + "}"

    def template(self, body: str) -> str:
        parts, at = [], 0
        for found in re.finditer(r"\$\{((?:[^{}]|\{[^{}]*\})*)\}", body):
            if found.start() > at:
                parts.append(_quote(_unescape(body[at:found.start()])))
            parts.append(f"({_Parser(found.group(1), self.scope).parse()} | string)")
            at = found.end()
        if at < len(body):
            parts.append(_quote(_unescape(body[at:])))
        return "(" + " ~ ".join(parts or ["''"]) + ")"

    def postfix(self, value: str | list[str]) -> str:
        while True:
            token = self.peek
            if token.text == "?.":
                raise self.refuse("optional chaining `?.`")
            if token.text == ".":
                self.take()
                name = self.take()
                if name.kind != "name":
                    raise self.refuse(f"`.{name.text}`")
                if self.peek.text == "(" and isinstance(value, list) and ".".join([*value, name.text]) in _FUNCTIONS:
                    value = self.call_function(".".join([*value, name.text]))
                elif self.peek.text == "(":
                    value = self.call_method(self.resolve(value), name.text)
                elif name.text == "length":
                    value = f"({self.resolve(value)} | length)"
                elif isinstance(value, list):
                    value = [*value, name.text]
                else:
                    value = _member(value, name.text)
            elif token.text == "[":
                self.take()
                index = self.expression(0)
                self.take("]")
                if isinstance(value, list) and index.startswith("'") and _IDENTIFIER.match(index[1:-1]):
                    value = [*value, index[1:-1]]
                else:
                    value = f"{self.resolve(value)}[{index}]"
            elif token.text == "(" and isinstance(value, list):
                value = self.call_function(".".join(value))
            else:
                return self.resolve(value)

    def call_method(self, owner: str, name: str) -> str:
        self.take("(")
        args = self.items(")")
        if name not in _METHODS or _METHODS[name][0] != len(args):
            raise self.refuse(f"the method `.{name}(...)`")
        return _METHODS[name][1](owner, args)

    def call_function(self, name: str) -> str:
        self.take("(")
        args = self.items(")")
        if name == "variable" and len(args) == 1 and args[0].startswith("'") and self.scope.variable:
            return self.scope.variable(args[0][1:-1])
        if name not in _FUNCTIONS or len(args) != 1:
            raise self.refuse(f"the call `{name}(...)`")
        return _FUNCTIONS[name](args[0])

    def resolve(self, value: str | list[str]) -> str:
        """A member chain's Jinja: its root name says what it reads."""
        if isinstance(value, str):
            return value
        root, rest = value[0], value[1:]
        scope = self.scope
        if root == "flow_input":
            if rest[:1] == ["iter"]:
                if not scope.in_loop:
                    raise self.refuse("`flow_input.iter` outside a for loop")
                if rest[1:2] == ["value"]:
                    return _chain("item", rest[2:])
                if rest[1:2] == ["index"]:
                    return _chain("index", rest[2:])
                return "{'value': item, 'index': index}"
            return _chain("inputs", rest)
        if root == "results":
            if not rest:
                raise self.refuse("`results` as a whole")
            if rest[0] not in scope.results:
                raise Untranslatable(f"`results.{rest[0]}` in `{self.source}` names no step before this one")
            return _chain(scope.results[rest[0]], rest[1:])
        if root == "previous_result":
            if scope.previous is None:
                raise self.refuse("`previous_result` here (the first step of a loop or branch)")
            return _chain(scope.previous, rest)
        if root == "resume" and scope.resume:
            return _chain(scope.resume, rest)
        if root == "error" and scope.error:
            if rest in ([], ["message"]):
                return "run.error"
            raise self.refuse(f"`error.{'.'.join(rest)}` (Millrace's run.error is the message)")
        if root == "result" and scope.result:
            return _chain("result", rest)
        raise self.refuse(f"the name `{'.'.join(value)}`")


def _chain(base: str, parts: list[str]) -> str:
    for part in parts:
        base = _member(base, part)
    return base


def _member(base: str, name: str) -> str:
    return f"{base}.{name}" if _IDENTIFIER.match(name) and not name.startswith("_") else f"{base}[{_quote(name)}]"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def _single(literal: str) -> str:
    body = literal[1:-1].replace('\\"', '"').replace('"', '\\"').replace("\\'", "'")
    return json.loads(f'"{body}"')


def _unescape(text: str) -> str:
    return json.loads('"' + text.replace('"', '\\"').replace("\\`", "`").replace("\n", "\\n") + '"')


def to_jinja(source: str, scope: ExprScope) -> str:
    """The Jinja expression (without ``${{ }}``) that means what ``source`` means in Windmill;
    raises Untranslatable naming the part that has no Jinja form."""
    source = source.strip().removesuffix(";").strip()
    if not source:
        raise Untranslatable("an empty expression")
    if "=>" in source or re.search(r"\bfunction\b", source):
        raise Untranslatable(f"a function (`=>`) in `{source}`: Jinja expressions have none; compute it in a step")
    return _Parser(source, scope).parse()


def to_value(source: str, scope: ExprScope) -> str:
    """``source`` as a Millrace value: one whole expression ``${{ ... }}`` (it keeps its type)."""
    return "${{ " + to_jinja(source, scope) + " }}"
