"""The process plumbing every executor shares: what a step inherits of the worker's
environment, reading a child's output streams, cutting logs to their limit."""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time

from orchestrator.definitions.script_inputs import INHERITED_ENV


def base_env(environ: dict[str, str]) -> dict[str, str]:
    return {key: environ[key] for key in INHERITED_ENV if key in environ}


def cap_text(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and its tail."""
    if len(text) <= limit:
        return text
    half = max(limit // 2, 1)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n… [{cut} characters cut] …\n{text[-half:]}"


def collect(proc: subprocess.Popen, timeout: float | None) -> tuple[bytes, bytes, bool]:
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


def last_line(data: bytes) -> str | None:
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else None
