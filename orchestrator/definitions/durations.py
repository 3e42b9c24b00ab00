"""Durations and sizes as flows write them: ``30s``, ``500ms``, ``1h30m``, ``2d`` or a number
of seconds; ``512MiB``, ``2GiB``, ``100MB`` or a number of MiB."""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: Any) -> float:
    """Seconds in ``value``; raises ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 1h30m or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(text) or pos == 0:
            raise ValueError(f"'{value}' is not a duration; write e.g. 30s, 5m, 1h30m, 500ms or a number of seconds")
    else:
        raise ValueError("expected a duration like 30s, 5m, 1h30m or a number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


# What JSON Schema says of them is what the parsers accept, so an editor flags no valid flow.
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$"
SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*[KkMmGg][Ii]?[Bb]\s*$"
DURATION_SCHEMA = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": DURATION_PATTERN}],
                   "description": "seconds, or a string like 30s, 5m, 1h30m, 500ms"}

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(DURATION_SCHEMA, mode="validation"),
]


_SIZE_UNITS = {"kib": 1 / 1024, "mib": 1.0, "gib": 1024.0, "kb": 1000 / 2**20, "mb": 10**6 / 2**20,
               "gb": 10**9 / 2**20}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMG]i?B)$", re.I)


def parse_size(value: Any) -> int:
    """MiB in ``value`` (at least 1); raises ValueError naming the accepted forms."""
    if isinstance(value, int) and not isinstance(value, bool):
        mib = float(value)
    elif isinstance(value, str) and (match := _SIZE.match(value.strip())):
        mib = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    else:
        raise ValueError(f"{value!r} is not a size; write e.g. 512MiB, 2GiB, 100MB or a number of MiB")
    if mib < 1:
        raise ValueError("a size is at least 1MiB")
    return int(mib)


SIZE_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SIZE_PATTERN}],
               "description": "MiB, or a string like 512MiB, 2GiB, 100MB"}

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(SIZE_SCHEMA, mode="validation"),
]
