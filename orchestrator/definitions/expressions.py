"""``${{ ... }}`` expressions: Jinja2 expression syntax in an immutable sandbox.

A value that is exactly one expression keeps the expression's type; expressions inside a
longer string are interpolated. Values are compiled once (:func:`compile_value`) into
:class:`Template` objects whose ``render(names)`` is all a worker does per step.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.errors import ExpressionError, did_you_mean

_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
NAMES = frozenset({"inputs", "steps", "item", "index", "run", "vars", "secrets"})
MAX_EXPRESSION_CHARS = 4096


# An expression's budget: what one evaluation may build. Jinja's sandbox already caps
# range() at 100,000 items; these cap what its operators and calls make of values.
MAX_ITEMS = 1_000_000  # characters of a string, items of a list, built by one operation
MAX_INT_BITS = 4096  # about 1,233 decimal digits
# String methods and filters whose integer argument is the size of what they build.
_SIZED_CALLS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "indent", "wordwrap", "truncate"})


class _Environment(ImmutableSandboxedEnvironment):
    """Sandbox where ``x.key`` on a mapping means the key, even ``x.items`` or ``x.keys``,
    and no operation builds a value past the budget above.

    Built with ``optimized=False``: Jinja's optimizer would evaluate constant parts when an
    expression is compiled (``'a' * 10**9`` at save time, kept in the compile cache); here
    nothing is evaluated before a step runs, and then within the budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _is_int(left) and _is_int(right):
            if right > 0 and abs(left) > 1 and abs(left).bit_length() * right > MAX_INT_BITS:
                raise ArithmeticError(f"{left} ** {right} is larger than {MAX_INT_BITS} bits")
        elif operator == "*":
            for sized, times in ((left, right), (right, left)):
                if isinstance(sized, str | list | tuple) and _is_int(times) and len(sized) * times > MAX_ITEMS:
                    raise ArithmeticError(f"the result would hold {len(sized) * times:,} items; at most "
                                          f"{MAX_ITEMS:,}")
            if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise ArithmeticError(f"the product is larger than {MAX_INT_BITS} bits")
        elif operator == "%" and isinstance(left, str):
            _check_widths(left)
        elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            if len(left) + len(right) > MAX_ITEMS:
                raise ArithmeticError(f"the result would hold {len(left) + len(right):,} items; at most "
                                      f"{MAX_ITEMS:,}")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _check_call(getattr(__obj, "__name__", ""), getattr(__obj, "__self__", None), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        """``'...'.format``: refused at access when its template asks for a huge width."""
        if getattr(value, "__name__", "") in ("format", "format_map"):
            _check_widths(getattr(value, "__self__", None))
        return super().wrap_str_format(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_WIDE = re.compile(r"\d{7,}")  # a width or precision of a million or more


def _check_widths(template: Any) -> None:
    if isinstance(template, str) and _WIDE.search(template):
        raise ArithmeticError(f"a format width past {MAX_ITEMS:,} characters")


def _check_call(name: str, owner: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a call that would build a string or list past the budget, before it runs."""
    if name in _SIZED_CALLS and any(_is_int(v) and abs(v) > MAX_ITEMS for v in (*args, *kwargs.values())):
        raise ArithmeticError(f"{name}() would build more than {MAX_ITEMS:,} characters")
    if name == "replace":
        text = owner if isinstance(owner, str) else (args[0] if args else None)
        rest = args if isinstance(owner, str) else args[1:]
        if isinstance(text, str) and len(rest) >= 2 and isinstance(rest[0], str) and isinstance(rest[1], str):
            grows = (text.count(rest[0]) if rest[0] else len(text) + 1) * (len(rest[1]) - len(rest[0]))
            if len(text) + grows > MAX_ITEMS:
                raise ArithmeticError(f"replace() would build {len(text) + grows:,} characters; at most {MAX_ITEMS:,}")


def _sized(name: str, filter_: Any) -> Any:
    def checked(*args: Any, **kwargs: Any) -> Any:
        _check_call(name, None, args, kwargs)
        if name == "format" and args:
            _check_widths(args[0])
        return filter_(*args, **kwargs)
    return checked


_ENV = _Environment(undefined=StrictUndefined, autoescape=False, optimized=False)
for _name in ("center", "indent", "wordwrap", "truncate", "replace", "format"):
    _ENV.filters[_name] = _sized(_name, _ENV.filters[_name])


@dataclass(frozen=True)
class References:
    """What an expression reads: root names, and step ids read through ``steps.<id>``."""

    names: frozenset[str] = frozenset()
    steps: frozenset[str] = frozenset()
    inputs: frozenset[str] = frozenset()
    vars: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()

    def __or__(self, other: References) -> References:
        return References(
            self.names | other.names, self.steps | other.steps, self.inputs | other.inputs,
            self.vars | other.vars, self.secrets | other.secrets,
        )


@dataclass(frozen=True)
class Expression:
    source: str
    references: References
    _call: Any = field(repr=False, compare=False)

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        try:
            value = self._call(**names)
        except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError,
                LookupError, AttributeError) as exc:
            raise ExpressionError(f"${{{{ {self.source.strip()} }}}}: {exc}") from None
        if isinstance(value, Undefined):
            raise ExpressionError(f"${{{{ {self.source.strip()} }}}}: {value._undefined_message}")
        return value


class Template:
    """A compiled value; ``render(names)`` evaluates its expressions."""

    references = References()
    is_constant = True

    def render(self, names: Mapping[str, Any]) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Constant(Template):
    value: Any

    def render(self, names: Mapping[str, Any]) -> Any:
        return self.value


@dataclass(frozen=True)
class Whole(Template):
    expression: Expression
    is_constant = False

    @property
    def references(self) -> References:  # type: ignore[override]
        return self.expression.references

    def render(self, names: Mapping[str, Any]) -> Any:
        return self.expression.evaluate(names)


@dataclass(frozen=True)
class Interpolated(Template):
    parts: tuple[str | Expression, ...]
    is_constant = False

    @property
    def references(self) -> References:  # type: ignore[override]
        refs = References()
        for part in self.parts:
            if isinstance(part, Expression):
                refs = refs | part.references
        return refs

    def render(self, names: Mapping[str, Any]) -> str:
        return "".join(
            part if isinstance(part, str) else _as_text(part.evaluate(names))
            for part in self.parts
        )


@dataclass(frozen=True)
class Structure(Template):
    """A list or mapping holding templates."""

    items: tuple[tuple[Any, Template], ...]
    is_list: bool
    is_constant = False

    @property
    def references(self) -> References:  # type: ignore[override]
        refs = References()
        for _, template in self.items:
            refs = refs | template.references
        return refs

    def render(self, names: Mapping[str, Any]) -> Any:
        if self.is_list:
            return [template.render(names) for _, template in self.items]
        return {key: template.render(names) for key, template in self.items}


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | list | dict):
        return json.dumps(value)
    return str(value)


@lru_cache(maxsize=8192)
def compile_expression(source: str) -> Expression:
    """Compile the text between ``${{`` and ``}}``; raises ExpressionError on bad syntax."""
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    if not source.strip():
        raise ExpressionError("empty expression ${{ }}")
    try:
        tree = _ENV.parse("{{ " + source + " }}")
        call = _ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        message = (exc.message or "syntax error").replace("print statement", "expression")
        if unknown := re.match(r"No filter named '([^']+)'", message):
            message = (f"no filter named '{unknown.group(1)}'{did_you_mean(unknown.group(1), _ENV.filters)}; "
                       f"filters: {', '.join(sorted(_ENV.filters))}")
        raise ExpressionError(f"${{{{ {source.strip()} }}}}: {message}") from None
    hidden = _private_attribute(tree)
    if hidden is not None:
        # The sandbox refuses these when evaluating; refusing them here tells the author at save.
        raise ExpressionError(f"${{{{ {source.strip()} }}}}: '{hidden}' is private; expressions may not "
                              "read names starting with '_'")
    expression = Expression(source, _references(tree), call)
    if expression.references.names <= _ENV.globals.keys():
        # It reads no run value (only constants and functions like range), so it is the same
        # at every run: evaluated here, within the budget, a mistake is found at save. The
        # value itself is not kept.
        expression.evaluate({})
    return expression


def _private_attribute(tree: nodes.Template) -> str | None:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        if isinstance(name, str) and name.startswith("_"):
            return name
    return None


def compile_value(value: Any) -> Template:
    """Compile a literal that may hold expressions anywhere inside it."""
    if isinstance(value, str):
        matches = list(_EXPRESSION.finditer(value))
        if not matches:
            if "${{" in value:
                raise ExpressionError(f"'{value}' opens an expression with ${{{{ but never closes it")
            return Constant(value)
        if len(matches) == 1 and matches[0].span() == (0, len(value)):
            return Whole(compile_expression(matches[0].group(1)))
        parts: list[str | Expression] = []
        pos = 0
        for match in matches:
            if match.start() > pos:
                parts.append(value[pos : match.start()])
            parts.append(compile_expression(match.group(1)))
            pos = match.end()
        if pos < len(value):
            parts.append(value[pos:])
        return Interpolated(tuple(parts))
    if isinstance(value, list | dict):
        pairs = list(enumerate(value)) if isinstance(value, list) else list(value.items())
        compiled = tuple((key, compile_value(item)) for key, item in pairs)
        if all(template.is_constant for _, template in compiled):
            return Constant(value)
        return Structure(compiled, isinstance(value, list))
    return Constant(value)


def _references(tree: nodes.Template) -> References:
    names = {node.name for node in tree.find_all(nodes.Name) if node.ctx == "load"}
    keys: dict[str, set[str]] = {"steps": set(), "inputs": set(), "vars": set(), "secrets": set()}
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node.node, nodes.Name) and node.node.name in keys:
            if isinstance(node, nodes.Getattr):
                key = node.attr
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                key = node.arg.value
            else:
                continue
            keys[node.node.name].add(key)
    return References(frozenset(names), *(frozenset(keys[k]) for k in ("steps", "inputs", "vars", "secrets")))
