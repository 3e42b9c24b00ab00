"""What every executor is given and what it reports: one signature for every language.

An executor runs one step's code in a process of its own and never raises for what the
step does: a failure is an :class:`Execution` that is not ``ok``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Limits:
    """What one step may use (``cpu_s`` None: only the wall-clock timeout). Memory and
    processes are counted for the step's processes together (a cgroup), disk is its private
    temporary space, logs and result are what is kept of its output."""

    memory_mb: int = 1024
    processes: int = 256
    cpu_s: int | None = None
    disk_mb: int = 1024
    log_bytes: int = 65536
    result_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True)
class StepCall:
    """One step's code to run, with what it is given.

    ``env`` holds the step's own variables (``MILLRACE_RUN_ID`` and the like); an executor
    adds only what ``process.INHERITED_ENV`` lets through from the worker's environment.
    ``database_url`` is an SQL step's connection; ``node_modules`` is where a JavaScript
    step's npm imports resolve. Languages that need neither ignore them. ``limits`` and
    ``network`` are what the step may use and reach (SQL steps run in the worker and take
    neither).
    """

    code: str
    args: dict[str, Any]
    timeout: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    database_url: str | None = None
    node_modules: Path | None = None
    limits: Limits | None = None  # None: the executor's defaults
    network: str | None = None  # "host" or "none"; None: "host"
    # called with the output so far, at most once a second while the step runs (a step that
    # ends within a second is never called): what readers follow live
    on_output: Callable[[str], None] | None = None


@dataclass(frozen=True, slots=True)
class Execution:
    """What running one step's code produced."""

    ok: bool
    result: Any
    error: str | None
    logs: str
    duration_s: float
    timed_out: bool = False


class Executor(Protocol):
    def run(self, call: StepCall) -> Execution:
        """Run ``call.code`` with ``call.args``; report what it produced."""
        ...
