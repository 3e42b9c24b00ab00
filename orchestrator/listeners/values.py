"""Broker headers as JSON values, so that `trigger.headers` reads the same from every kind."""
from __future__ import annotations

from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` with bytes decoded and what JSON has no type for written as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
