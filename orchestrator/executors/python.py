"""Python steps: ``main(**with)`` in a process forked from a pre-imported step server."""
from __future__ import annotations

import os

from orchestrator.executors.base import Execution, Limits, StepCall
from orchestrator.executors.process import base_env
from orchestrator.executors.sandbox import Sandbox
from orchestrator.executors.server import Servers, death, explain


class PythonExecutor:
    """Runs Python step code, each call in its own process forked from a step server
    (one per network mode and disk size, started when first needed)."""

    def __init__(self, python: str | None = None, preload: tuple[str, ...] = ("json",),
                 limits: Limits = Limits(), sandbox: Sandbox | None = None):
        self.limits = limits
        self.servers = Servers(python=python, preload=preload, sandbox=sandbox)

    def run(self, call: StepCall) -> Execution:
        """Run ``main(**args)`` from ``call.code``; never raises for what the step does."""
        limits = call.limits or self.limits
        server = self.servers.get(call.network, limits.disk_mb)
        request = {"code": call.code, "args": call.args, "env": {**base_env(dict(os.environ)), **call.env}}
        found = server.exchange(request, python=True, limits=limits, timeout=call.timeout, on_output=call.on_output)
        result = found.message("result")
        if result is not None and result["ok"] and not found.too_large:
            return Execution(True, result.get("result"), None, found.logs, found.duration_s)
        error = result.get("error") if result is not None else death(found.ending)
        return Execution(False, None, explain(found, limits, error, call.timeout), found.logs, found.duration_s,
                         timed_out=found.timed_out)

    def close(self) -> None:
        self.servers.close()
