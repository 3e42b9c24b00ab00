"""Executors run a step's code in a process of its own and report what it produced."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Only these survive from the worker's environment into a step's: a step must not
# inherit the worker's database or broker credentials.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER")


@dataclass(frozen=True, slots=True)
class Execution:
    """What running one step's code produced."""

    ok: bool
    result: Any
    error: str | None
    logs: str
    duration_s: float
    timed_out: bool = False


def cap_text(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and its tail."""
    if len(text) <= limit:
        return text
    half = max(limit // 2, 1)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n… [{cut} characters cut] …\n{text[-half:]}"


def base_env(environ: dict[str, str]) -> dict[str, str]:
    return {key: environ[key] for key in INHERITED_ENV if key in environ}
