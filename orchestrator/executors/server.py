"""A step server (``forkserver.py``) seen from the worker, and one step's exchange with it.

Every language runs its steps through one: Python steps in the server's own interpreter,
Bash and JavaScript as commands its children exec. The server starts once per worker
process and configuration (interpreter, network, disk size), inside the sandbox when there
is one, and is started again if it dies.

What a step sends back is read as it comes and never held whole: its output is kept to
``log_limit`` bytes (head and tail), its result to ``result_limit`` bytes (past it the step
is ended and fails saying so), each in time linear in what was sent.
"""
from __future__ import annotations

import contextlib
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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.executors.base import Limits
from orchestrator.executors.forkserver import HEADER
from orchestrator.executors.process import base_env
from orchestrator.executors.sandbox import Cgroups, Sandbox

# The server's source: the argument checks, then the server (one script for `python -c`).
_SOURCE = Path(__file__).with_name("step_arguments.py").read_text() + "\n" + \
    Path(__file__).with_name("forkserver.py").read_text().replace("from __future__ import annotations\n", "", 1)
# The interpreter itself, not a virtualenv's link to it: reachable by the step user wherever
# the worker's own virtualenv lives. The server needs the standard library only.
_BASE_PYTHON = os.path.realpath(sys.executable)
ENV_MOUNT = "/run/millrace/env"  # where a step's environment is, inside the sandbox


class Capture:
    """A stream kept to ``limit`` bytes: its first half and its last, and how much was cut."""

    def __init__(self, limit: int):
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > 2 * self.half:  # trimmed in bulk: linear overall
                del self.tail[:-self.half]

    def text(self) -> str:
        tail = bytes(self.tail[-self.half:])
        cut = self.total - len(self.head) - len(tail)
        if cut <= 0:
            return (bytes(self.head) + tail).decode("utf-8", "replace")
        return (f"{bytes(self.head).decode('utf-8', 'replace')}\n… [{cut} bytes cut] …\n"
                f"{tail.decode('utf-8', 'replace')}")


@dataclass
class Exchange:
    """What one step's run sent back."""

    messages: list[dict] = field(default_factory=list)
    logs: str = ""
    stdout_tail: bytes = b""  # the end of stdout alone (a Bash step's last line is its result)
    report: bytes = b""  # what a command wrote to fd 3
    timed_out: bool = False
    too_large: bool = False  # its result passed result_bytes: ended there
    duration_s: float = 0.0
    fork_refusals: int = 0  # forks its process limit refused
    memory_kills: int = 0  # processes its memory limit killed

    def message(self, kind: str) -> dict | None:
        return next((m for m in self.messages if m.get("type") == kind), None)

    @property
    def ending(self) -> dict | None:
        """How the step's process ended: as the step's child saw its command end, or as the
        server reaped a child that died without a word (``code`` or ``signal``)."""
        return self.message("exited") or self.message("exit")


class StepServer:
    """One server process and its listening socket (outside the sandbox: no step sees it)."""

    def __init__(self, python: str | None = None, preload: tuple[str, ...] = ("json",),
                 sandbox: Sandbox | None = None, *, network: str = "host", disk_mb: int = 1024,
                 mounts: tuple[tuple[Path, str], ...] = ()):
        self.python = python or _BASE_PYTHON
        self.preload, self.sandbox = preload, sandbox
        self.network, self.disk_mb, self.mounts = network, disk_mb, mounts
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._folder: str | None = None
        self.cgroups: Cgroups | None = None
        self._limited: tuple[int, int] | None = None  # what the cgroups hold now

    def exchange(self, request: dict, *, python: bool, limits: Limits, timeout: float | None,
                 report: bool = False, on_output: Callable[[str], None] | None = None) -> Exchange:
        """Run one step: ``request`` as the server takes it; ``python`` steps share one log
        stream, commands get stdout, stderr (and fd 3 when ``report``)."""
        with self._lock:
            conn = self._connect()
            if self.cgroups is not None:
                wanted = (limits.memory_mb, limits.processes + 3)  # + the server, its spare, bwrap
                if wanted != self._limited:  # written only when a step asks for other limits
                    self.cgroups.limit(*wanted)
                    self._limited = wanted
            pipes = [os.pipe() for _ in range(1 if python else 3 if report else 2)]
            payload = json.dumps({**request, "cpu_s": limits.cpu_s}).encode()
            began = time.monotonic()
            try:
                socket.send_fds(conn, [HEADER.pack(len(payload))], [w for _, w in pipes])
                conn.sendall(payload)
            except OSError:
                for r, w in pipes:
                    os.close(r)
                    os.close(w)
                conn.close()
                raise
            for _, w in pipes:
                os.close(w)  # the child holds them now
            before = self.cgroups.hits() if self.cgroups is not None else (0, 0)  # noqa: SIM108
            found = _read(conn, [r for r, _ in pipes], python=python, limits=limits, timeout=timeout,
                          on_output=on_output)
            found.duration_s = time.monotonic() - began
            if self.cgroups is not None:
                after = self.cgroups.hits()
                found.fork_refusals, found.memory_kills = after[0] - before[0], after[1] - before[1]
            if found.timed_out and self.sandbox is not None:
                # a step that stopped its own server or spare (same user) would hang every later
                # one: after a timeout the next step gets a fresh sandbox (ending this one ends
                # every process in its PID namespace)
                self.close()
            return found

    def close(self) -> None:
        """Stop the server (it also stops by itself when this process ends)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        if self.cgroups is not None:
            self.cgroups.remove()
            self.cgroups = None

    def _connect(self) -> socket.socket:
        for attempt in (1, 2):
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(str(Path(self._folder) / "step.sock"))
                return conn
            except OSError:
                conn.close()
                if attempt == 2:
                    raise
                self.close()  # a server that does not answer is replaced
        raise AssertionError("unreachable")

    def _start(self) -> None:
        self.close()
        _remove_orphans()
        # 0700, the worker's: no step enters; named after this process, so a successor can
        # tell it is an orphan once this process is gone (killed with no chance to clean up)
        self._folder = tempfile.mkdtemp(prefix=f"millrace-steps-{os.getpid()}-")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(Path(self._folder) / "step.sock"))
        listener.listen(64)
        python, mounts = self.python, self.mounts
        if self.sandbox is not None and Path(self.python).parent.name == "bin" and self.python != _BASE_PYTHON:
            # an environment's interpreter: the environment mounted where the step user can reach it
            mounts = ((Path(self.python).parent.parent, ENV_MOUNT), *mounts)
            python = f"{ENV_MOUNT}/bin/{Path(self.python).name}"
        # the server's source on the command line: no file of the worker's needs to be readable
        argv = [python, "-c", _SOURCE, str(listener.fileno())]
        env = base_env(dict(os.environ))
        if self.sandbox is not None:
            argv.append("--sandboxed")
            self.cgroups = Cgroups(f"millrace-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            self._limited = None
            argv = self.sandbox.command([*argv, *self.preload], network=self.network, disk_mb=self.disk_mb,
                                        mounts=mounts)
            # join the cgroups first, as root; bwrap and all it starts are counted there
            argv = ["/bin/sh", "-c", 'for f in $CGROUP_PROCS; do echo $$ > "$f" || exit 70; done; exec "$@"',
                    "join", *argv]
            env["CGROUP_PROCS"] = " ".join(str(p) for p in self.cgroups.procs)
        else:
            argv += self.preload
        try:
            # stdin is a pipe from us: when this process dies, the server reads EOF and exits.
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                          pass_fds=[listener.fileno()], start_new_session=True)
        finally:
            listener.close()  # the server holds it
        ready = self._proc.stdout.readline()
        if ready.strip() != b"ready":
            self.close()
            raise RuntimeError(f"the step server did not start ({self.python}"
                               f"{', sandboxed' if self.sandbox else ''})")


def _remove_orphans() -> None:
    """The socket folders of step servers whose worker process died without closing them."""
    for folder in Path(tempfile.gettempdir()).glob("millrace-steps-*-*"):
        owner = folder.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(folder, ignore_errors=True)


class Servers:
    """A language's step servers in one worker process: one per network mode and disk size."""

    def __init__(self, python: str | None = None, preload: tuple[str, ...] = ("json",),
                 sandbox: Sandbox | None = None, mounts: tuple[tuple[Path, str], ...] = ()):
        self.python, self.preload, self.sandbox, self.mounts = python, preload, sandbox, mounts
        self._servers: dict[tuple[str, int], StepServer] = {}

    def get(self, network: str | None, disk_mb: int) -> StepServer:
        key = (network or "host", disk_mb)
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = StepServer(self.python, self.preload, self.sandbox, network=key[0],
                                                     disk_mb=disk_mb, mounts=self.mounts)
        return server

    def close(self) -> None:
        for server in self._servers.values():
            server.close()


def death(ended: dict | None, *, command: bool = False) -> str:
    """How a step's process ended without reporting: its exit status or the signal."""
    if ended is None:
        return "the step process vanished without a word"
    if "broken" in ended:
        return f"the step's process broke off its report ({ended['broken']})"
    if "signal" in ended:
        return f"killed by signal {signal.Signals(ended['signal']).name}"
    return f"exit code {ended['code']}" if command else f"process exited with code {ended['code']} before returning"


def explain(found: Exchange, limits: Limits, error: str | None, timeout: float | None) -> str:
    """A failed step's error, naming the limit it ran into when it ran into one."""
    ended = found.ending or {}
    if found.timed_out:
        return f"timed out after {timeout:g}s"
    if found.too_large:
        return f"its result is larger than the result limit ({limits.result_bytes:,} bytes, MILLRACE_RESULT_LIMIT)"
    if found.memory_kills:
        return f"went over its memory limit ({limits.memory_mb} MiB) and was killed"
    if limits.cpu_s and ended.get("signal") in (signal.SIGXCPU, signal.SIGKILL) and not found.memory_kills:
        return f"used up its CPU time limit ({limits.cpu_s} s)"
    error = error or "failed"
    if found.fork_refusals:
        return f"reached its process limit ({limits.processes} processes): {error}"
    if "No space left on device" in error or "No space left on device" in found.logs[-4096:]:
        return f"filled its temporary space ({limits.disk_mb} MiB): {error}"
    return error


def _drain(selector: selectors.BaseSelector, logs: Capture, out_tail: bytearray, report: bytearray,
           limits: Limits) -> None:
    """What the step wrote before it reported: already in the pipes, read without waiting
    (a process it left behind may hold a pipe open; its server ends it)."""
    for key in list(selector.get_map().values()):
        if key.data == "conn":
            continue
        while True:
            try:
                chunk = os.read(key.fileobj, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            if not _take(key.data, chunk, logs, out_tail, report, limits):
                break  # the report is past the result limit: the step fails on its size


def _take(kind: str, chunk: bytes, logs: Capture, out_tail: bytearray, report: bytearray, limits: Limits) -> bool:
    """Keep ``chunk`` of stream ``kind``; False when the report grew past the result limit."""
    if kind == "report":
        report += chunk
        return len(report) <= limits.result_bytes
    logs.feed(chunk)
    if kind == "out":
        out_tail += chunk
        if len(out_tail) > 2 * (limits.result_bytes + 1):
            del out_tail[:-(limits.result_bytes + 1)]
    return True


def _read(conn: socket.socket, readers: list[int], *, python: bool, limits: Limits,
          timeout: float | None, on_output: Callable[[str], None] | None = None) -> Exchange:
    """Read the step's messages and output until the server says it ended (or time is up,
    or its result grew past the limit, or it broke the protocol: then hang up, which ends
    it). Whatever happens, the connection and the pipes are closed."""
    try:
        return _read_all(conn, readers, python=python, limits=limits, timeout=timeout, on_output=on_output)
    except (OSError, ValueError) as exc:  # a reset connection, a message that is not ours
        found = Exchange()
        found.messages.append({"type": "exit", "broken": f"{type(exc).__name__}: {exc}"})
        return found
    finally:
        conn.close()
        for fd in readers:
            with contextlib.suppress(OSError):
                os.close(fd)


def _read_all(conn: socket.socket, readers: list[int], *, python: bool, limits: Limits,
              timeout: float | None, on_output: Callable[[str], None] | None = None) -> Exchange:
    found = Exchange()
    logs, out_tail, report = Capture(limits.log_bytes), bytearray(), bytearray()
    buffer, offset = bytearray(), 0
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ, "conn")
    for i, fd in enumerate(readers):
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, "log" if python else ("out", "err", "report")[i])
    deadline = None if timeout is None else time.monotonic() + timeout
    ended = False  # the step reported its end (or its server did, or hung up)
    shown_at, shown_total = time.monotonic(), 0  # output handed to on_output: when, how much
    while selector.get_map() and not ended:
        wait = None if deadline is None else max(deadline - time.monotonic(), 0)
        if on_output is not None and logs.total != shown_total:  # wake to hand on what came
            wait = 1.0 if wait is None else min(wait, 1.0)
        events = selector.select(wait)
        if not events and deadline is not None and time.monotonic() >= deadline:
            found.timed_out = True
            break
        for key, _ in events:
            if key.data == "conn":
                chunk = conn.recv(1 << 16)
                if not chunk:
                    selector.unregister(conn)
                    ended = True
                    continue
                buffer += chunk
                while len(buffer) - offset >= HEADER.size:
                    size = HEADER.unpack_from(buffer, offset)[0]
                    if size > limits.result_bytes + 4096:
                        found.too_large = True
                        break
                    if len(buffer) - offset < HEADER.size + size:
                        break
                    start = offset + HEADER.size
                    message = json.loads(bytes(buffer[start:start + size]))
                    if not isinstance(message, dict) or len(found.messages) > 16:
                        raise ValueError("the step's process broke the protocol")
                    found.messages.append(message)
                    offset = start + size
                if offset > 1 << 20:
                    del buffer[:offset]
                    offset = 0
                if found.too_large:
                    break
                if any(found.message(kind) for kind in ("result", "exited", "exit")):
                    ended = True  # the step reported (or its server did): what it wrote is in the pipes
                continue
            chunk = os.read(key.fileobj, 1 << 16)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            if not _take(key.data, chunk, logs, out_tail, report, limits):
                found.too_large = True
                break
        if found.too_large:
            break
        if on_output is not None and logs.total != shown_total and time.monotonic() - shown_at >= 1.0:
            shown_at, shown_total = time.monotonic(), logs.total
            with contextlib.suppress(Exception):  # a reader's trouble never touches the step
                on_output(logs.text())
    if ended and not found.too_large:
        _drain(selector, logs, out_tail, report, limits)
        found.too_large = len(report) > limits.result_bytes
    selector.close()  # the caller closes the connection: a step still running is ended then
    found.logs, found.stdout_tail, found.report = logs.text(), bytes(out_tail), bytes(report)
    return found
