"""Whether ``main(**args)`` fits ``main``'s signature and simple type hints: what a Python
step's child checks before calling it. Standard library only: the step server runs under
any environment's interpreter, and ``server.py`` hands this source to it before its own."""
from __future__ import annotations

import inspect
import types
import typing

_SCALARS = (int, float, str, bool, list, dict)


def check_arguments(main: typing.Callable, args: dict) -> str | None:
    """Why ``main(**args)`` does not fit main's signature and simple type hints, or None."""
    try:
        signature = inspect.signature(main, eval_str=True)
    except (NameError, TypeError, ValueError):
        signature = inspect.signature(main)
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in args:
        if name not in params and not takes_any:
            return f"main() takes no argument '{name}'"
    for name, param in params.items():
        if param.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        if name not in args:
            if param.default is inspect.Parameter.empty:
                return f"main() is missing argument '{name}'"
            continue
        if param.annotation is not inspect.Parameter.empty:
            problem = _type_problem(args[name], param.annotation)
            if problem:
                return f"argument '{name}': {problem}"
            if param.annotation is float and isinstance(args[name], int):
                args[name] = float(args[name])
    return None


def _type_problem(value: object, hint: object) -> str | None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if any(_type_problem(value, option) is None for option in options):
            return None
        names = " or ".join(_name(o) for o in options)
        return f"expected {names}, got {_name(type(value))}"
    if hint is type(None):
        return None if value is None else f"expected None, got {_name(type(value))}"
    expected = origin or hint
    if expected not in _SCALARS:
        return None  # a hint we do not check
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return None
    if expected is int and isinstance(value, bool):
        return "expected int, got bool"
    if not isinstance(value, expected):  # type: ignore[arg-type]
        return f"expected {expected.__name__}, got {_name(type(value))}"
    return None


def _name(kind: object) -> str:
    return "None" if kind is type(None) else getattr(kind, "__name__", str(kind))
