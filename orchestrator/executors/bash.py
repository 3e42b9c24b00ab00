"""Bash steps: ``bash -c`` in its own session, ``with`` values as environment variables."""
from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from orchestrator.executors import Execution, base_env, cap_text

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BashExecutor:
    """Runs a Bash step in its own process group; its last stdout line is the result."""

    def __init__(self, log_limit: int = 65536):
        self.log_limit = log_limit

    def run(self, code: str, args: dict[str, Any], *, timeout: float | None = None,
            env: Mapping[str, str] | None = None) -> Execution:
        started = time.monotonic()
        bad = [name for name in args if not _NAME.match(name)]
        if bad:
            return Execution(False, None, f"'{bad[0]}' cannot be an environment variable name", "", 0.0)
        variables = {**base_env(dict(os.environ)), **(env or {})}
        variables.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in args.items()})
        proc = subprocess.Popen(["bash", "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=variables, start_new_session=True)
        stdout, logs, timed_out = _collect(proc, timeout)
        code_ = proc.wait()
        duration = time.monotonic() - started
        text = cap_text(logs.decode("utf-8", "replace"), self.log_limit)
        if timed_out:
            return Execution(False, None, f"timed out after {timeout:g}s", text, duration, timed_out=True)
        if code_ != 0:
            error = f"exit code {code_}" if code_ > 0 else f"killed by signal {signal.Signals(-code_).name}"
            last_err = _last_line(logs)
            return Execution(False, None, f"{error}: {last_err}" if last_err else error, text, duration)
        return Execution(True, _result(_last_line(stdout)), None, text, duration)


def _collect(proc: subprocess.Popen, timeout: float | None) -> tuple[bytes, bytes, bool]:
    """stdout alone and both streams in arrival order, until both close or time runs out."""
    deadline = None if timeout is None else time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "out")
    selector.register(proc.stderr, selectors.EVENT_READ, "err")
    stdout, both = bytearray(), bytearray()
    while selector.get_map():
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            os.killpg(proc.pid, signal.SIGKILL)
            return bytes(stdout), bytes(both), True
        for key, _ in selector.select(wait):
            chunk = os.read(key.fileobj.fileno(), 1 << 16)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            both += chunk
            if key.data == "out":
                stdout += chunk
    return bytes(stdout), bytes(both), False


def _last_line(data: bytes) -> str | None:
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else None


def _result(line: str | None) -> Any:
    if line is None:
        return None
    try:
        return json.loads(line)
    except ValueError:
        return line
