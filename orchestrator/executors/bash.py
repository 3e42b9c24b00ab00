"""Bash steps: ``bash -c`` in its own session, ``with`` values as environment variables."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from typing import Any

from orchestrator.executors.base import Execution, StepCall
from orchestrator.executors.process import base_env, cap_text, collect, last_line

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BashExecutor:
    """Runs a Bash step in its own process group; its last stdout line is the result."""

    def __init__(self, log_limit: int = 65536):
        self.log_limit = log_limit

    def run(self, call: StepCall) -> Execution:
        code, args, timeout = call.code, call.args, call.timeout
        started = time.monotonic()
        bad = [name for name in args if not _NAME.match(name)]
        if bad:
            return Execution(False, None, f"'{bad[0]}' cannot be an environment variable name", "", 0.0)
        variables = {**base_env(dict(os.environ)), **call.env}
        variables.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in args.items()})
        proc = subprocess.Popen(["bash", "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=variables, start_new_session=True)
        stdout, logs, timed_out = collect(proc, timeout)
        code_ = proc.wait()
        duration = time.monotonic() - started
        text = cap_text(logs.decode("utf-8", "replace"), self.log_limit)
        if timed_out:
            return Execution(False, None, f"timed out after {timeout:g}s", text, duration, timed_out=True)
        if code_ != 0:
            error = f"exit code {code_}" if code_ > 0 else f"killed by signal {signal.Signals(-code_).name}"
            last_err = last_line(logs)
            return Execution(False, None, f"{error}: {last_err}" if last_err else error, text, duration)
        return Execution(True, _result(last_line(stdout)), None, text, duration)


def _result(line: str | None) -> Any:
    if line is None:
        return None
    try:
        return json.loads(line)
    except ValueError:
        return line
