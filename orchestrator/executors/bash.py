"""Bash steps: ``bash -c`` exec'd by a step server's child, ``with`` values as environment
variables; the last line the step prints on stdout is its result."""
from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

from orchestrator.executors.base import Execution, Limits, StepCall
from orchestrator.executors.process import base_env, last_line
from orchestrator.executors.sandbox import Sandbox
from orchestrator.executors.server import Servers, death, explain

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BashExecutor:
    def __init__(self, limits: Limits = Limits(), sandbox: Sandbox | None = None):
        self.limits = limits
        self.bash = shutil.which("bash") or "/bin/bash"
        self.servers = Servers(sandbox=sandbox)

    def run(self, call: StepCall) -> Execution:
        bad = [name for name in call.args if not _NAME.match(name)]
        if bad:
            return Execution(False, None, f"'{bad[0]}' cannot be an environment variable name", "", 0.0)
        limits = call.limits or self.limits
        variables = {**base_env(dict(os.environ)), **call.env}
        variables.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in call.args.items()})
        server = self.servers.get(call.network, limits.disk_mb)
        found = server.exchange({"mode": "exec", "argv": [self.bash, "-c", call.code], "env": variables},
                                python=False, limits=limits, timeout=call.timeout, on_output=call.on_output)
        ended = found.ending or {}
        if ended.get("code") == 0 and not found.timed_out:
            line = last_line(found.stdout_tail)
            if line is not None and len(line.encode()) > limits.result_bytes:
                found.too_large = True
            else:
                return Execution(True, _result(line), None, found.logs, found.duration_s)
        error = death(ended, command=True) if ended else None
        last_err = last_line(found.logs.encode()) if ended else None
        if error and last_err:
            error = f"{error}: {last_err}"
        return Execution(False, None, explain(found, limits, error, call.timeout), found.logs, found.duration_s,
                         timed_out=found.timed_out)

    def close(self) -> None:
        self.servers.close()


def _result(line: str | None) -> Any:
    if line is None:
        return None
    try:
        return json.loads(line, parse_constant=_not_json)
    except ValueError:
        return line  # text, or NaN and the like, which JSON cannot keep: the line as it is


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")
