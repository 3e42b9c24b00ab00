"""Python steps: ``main(**with)`` in a process forked from a pre-imported fork server."""
from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from orchestrator.executors.base import Execution, StepCall
from orchestrator.executors.forkserver import HEADER
from orchestrator.executors.process import base_env, cap_text

_SERVER = Path(__file__).with_name("forkserver.py")
_KILL_GRACE_S = 5.0


class PythonExecutor:
    """Runs Python step code, each call in its own forked process."""

    def __init__(self, python: str = sys.executable, preload: tuple[str, ...] = ("json",),
                 log_limit: int = 65536):
        self.python = python
        self.preload = preload
        self.log_limit = log_limit
        self._lock = threading.Lock()
        self._server: subprocess.Popen | None = None
        self._folder: str | None = None

    def run(self, call: StepCall) -> Execution:
        """Run ``main(**args)`` from ``call.code``; never raises for what the step does."""
        timeout = call.timeout
        payload = json.dumps({"code": call.code, "args": call.args,
                              "env": {**base_env(dict(os.environ)), **call.env}})
        with self._lock:
            started = time.monotonic()
            log_fd = os.memfd_create("millrace-step-log")
            try:
                messages, timed_out = self._exchange(payload.encode(), log_fd, timeout)
                os.lseek(log_fd, 0, os.SEEK_SET)
                logs = _read_all(log_fd).decode("utf-8", "replace")
            finally:
                os.close(log_fd)
        duration = time.monotonic() - started
        logs = cap_text(logs, self.log_limit)
        result = next((m for m in messages if m.get("type") == "result"), None)
        if timed_out:
            return Execution(False, None, f"timed out after {timeout:g}s", logs, duration, timed_out=True)
        if result is not None:
            return Execution(result["ok"], result.get("result"), result.get("error"), logs, duration)
        return Execution(False, None, _death(messages), logs, duration)

    def close(self) -> None:
        """Stop the fork server (it also stops by itself when this process ends)."""
        if self._server is not None:
            self._server.kill()
            self._server.wait()
            self._server = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _exchange(self, payload: bytes, log_fd: int, timeout: float | None) -> tuple[list[dict], bool]:
        conn = self._connect()
        try:
            socket.send_fds(conn, [HEADER.pack(len(payload))], [log_fd])
            conn.sendall(payload)
            return _read_messages(conn, timeout)
        finally:
            conn.close()

    def _connect(self) -> socket.socket:
        for attempt in (1, 2):
            if self._server is None or self._server.poll() is not None:
                self._start_server()
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(str(Path(self._folder) / "fork.sock"))
                return conn
            except OSError:
                conn.close()
                if attempt == 2:
                    raise
                self.close()  # a server that does not answer is replaced
        raise AssertionError("unreachable")

    def _start_server(self) -> None:
        self.close()
        self._folder = tempfile.mkdtemp(prefix="millrace-fork-")
        # stdin is a pipe from us: when this process dies, the server reads EOF and exits.
        self._server = subprocess.Popen(
            [self.python, str(_SERVER), str(Path(self._folder) / "fork.sock"), *self.preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=base_env(dict(os.environ)),
            start_new_session=True,
        )
        ready = self._server.stdout.readline()
        if ready.strip() != b"ready":
            raise RuntimeError(f"the Python fork server did not start ({self.python})")


def _read_messages(conn: socket.socket, timeout: float | None) -> tuple[list[dict], bool]:
    """Messages until the child's result or, if it died first, its exit; kills it on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    buffer = b""
    messages: list[dict] = []
    pid: int | None = None
    timed_out = False
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ)
    while True:
        wait = None if deadline is None else max(deadline - time.monotonic(), 0)
        if not selector.select(wait):
            if timed_out:
                break  # killed, and still no word from the server: give up
            timed_out = True
            if pid is not None:
                _kill_group(pid)
            deadline = time.monotonic() + _KILL_GRACE_S
            continue
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        buffer += chunk
        while len(buffer) >= HEADER.size:
            size = HEADER.unpack_from(buffer)[0]
            if len(buffer) < HEADER.size + size:
                break
            message = json.loads(buffer[HEADER.size:HEADER.size + size])
            buffer = buffer[HEADER.size + size:]
            messages.append(message)
            if message["type"] == "pid":
                pid = message["pid"]
            elif message["type"] in ("result", "exit"):
                return messages, timed_out  # the server reaps the child and ends its group
    return messages, timed_out


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _death(messages: list[dict]) -> str:
    exit_message = next((m for m in messages if m.get("type") == "exit"), None)
    if exit_message is None:
        return "the step process vanished without a word"
    if "signal" in exit_message:
        return f"killed by signal {signal.Signals(exit_message['signal']).name}"
    return f"process exited with code {exit_message['code']} before returning"


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)
