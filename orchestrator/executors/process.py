"""What every executor shares about a step's process: what it inherits of the worker's
environment, and its output's last line. (Starting it, reading its output and cutting it
to its limits is the step server's, ``server.py``.)"""
from __future__ import annotations

from orchestrator.definitions.script_inputs import INHERITED_ENV


def base_env(environ: dict[str, str]) -> dict[str, str]:
    return {key: environ[key] for key in INHERITED_ENV if key in environ}


def last_line(data: bytes) -> str | None:
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else None
