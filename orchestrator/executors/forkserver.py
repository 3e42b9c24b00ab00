"""The step server: a pre-imported Python that forks one child per step, ahead of time.

Run by :mod:`orchestrator.executors.server` as ``python -c SOURCE LISTEN_FD [--sandboxed]
[MODULE ...]`` (standard library only: any environment's interpreter runs it). The spare
child, already in its own session, accepts the next connection on the inherited listening
socket itself, so neither a fork nor the server is in a request's way; each step gets a
directory of its own (HOME, TMPDIR, its cwd), removed when it ends. A step is Python
(``main(**args)`` in the child) or a command (``exec``: the request's files written, then
``argv`` spawned with stdout, stderr and fd 3 given). Messages are a 4-byte big-endian
length and JSON: the request (its output descriptors attached), then the child's
``result`` or ``exited``; a child that dies without a word is reported by the server
(``exit``). ``--sandboxed``: alone in a PID namespace with its steps, the server ends
every process that is not part of a running step after each one.
"""
from __future__ import annotations

import gc
import importlib
import io
import json
import linecache
import os
import resource
import select
import selectors
import shutil
import signal
import socket
import struct
import sys
import tempfile
import traceback
import typing

try:  # imported as a module; run with ``python -c``, its source comes first (server.py)
    from orchestrator.executors.step_arguments import check_arguments
except ImportError:
    pass

HEADER = struct.Struct(">I")
# Held here so a step that replaces json.dumps cannot break its own report.
_dumps, _loads = json.dumps, json.loads


def send(conn: socket.socket, message: dict) -> None:
    data = _dumps(message).encode()
    conn.sendall(HEADER.pack(len(data)) + data)


def recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class Server:
    def __init__(self, listen_fd: int, sandboxed: bool = False):
        self.listener = socket.socket(fileno=listen_fd)
        self.sandboxed = sandboxed
        self.tmp_root = tempfile.gettempdir()
        self.folders: dict[int, str] = {}  # child pid -> its step's directory
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}  # child pid -> its client connection
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "reap")
        self.selector.register(sys.stdin, selectors.EVENT_READ, "parent")
        # Watched for hang-ups only (the child reads the request from the same socket).
        self.hangups = select.epoll()
        self.selector.register(self.hangups.fileno(), selectors.EVENT_READ, "hangup")
        self.spare: tuple[int, socket.socket] | None = None  # a forked child awaiting a request
        self.fork_spare()

    def serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data == "taken":
                    self.taken(key.fileobj)
                elif key.data == "reap":
                    self.reap()
                    if self.spare is None:
                        self.fork_spare()
                elif key.data == "parent":
                    if not sys.stdin.buffer.read1(4096):
                        self.stop_children()
                        return  # our parent is gone: so are we and the steps it ran
                elif key.data == "hangup":
                    self.clients_gone()

    def fork_spare(self) -> None:
        """Fork the child that takes the next request, while nobody waits for it. It accepts
        the connection itself (the server is not in the way), then tells the server which."""
        folder = tempfile.mkdtemp(prefix="step-", dir=self.tmp_root)  # 0700, made before the fork
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            ours.close()
            # Hold no other step's connection: its client waits for it to close.
            for other in self.children.values():
                other.close()
            os.setsid()  # its own process group: a timeout kills everything it starts
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            # None of the server's own descriptors stay with a step: its selector and hang-up
            # watch (a step could unregister the server's reaping), its wake-up pipe, its stdin.
            self.selector.close()
            self.hangups.close()
            os.close(self.wakeup_r)
            os.close(self.wakeup_w)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            _prepare_stdio()
            _rehearse()
            try:
                conn, _ = self.listener.accept()
                self.listener.close()
                socket.send_fds(theirs, [b"."], [conn.fileno()])  # the server watches it for a hang-up
            except OSError:
                os._exit(0)  # the server went away before we had work
            theirs.close()
            run_child(conn, folder)  # never returns
        theirs.close()
        self.spare = (pid, ours)
        self.folders[pid] = folder
        self.selector.register(ours, selectors.EVENT_READ, "taken")

    def taken(self, handle: object) -> None:
        """The spare took a connection: watch it, and fork the next spare. Nothing when the
        spare that said so is no longer the spare: it ended, and was reaped and replaced, in
        the same wake-up (claiming the new one would leave it waiting on the listener, unseen,
        to take a step it cannot report)."""
        if self.spare is None or self.spare[1] is not handle:
            return
        pid, conn = self._claim_spare()
        if conn is not None:
            self.children[pid] = conn
            self.hangups.register(conn.fileno(), select.EPOLLRDHUP)
        self.fork_spare()

    def _claim_spare(self) -> tuple[int, socket.socket | None]:
        """The spare, no longer one: the connection it took (None if it took none)."""
        pid, handle = self.spare
        self.spare = None
        self.selector.unregister(handle)
        handle.setblocking(False)
        try:
            _, fds, _, _ = socket.recv_fds(handle, 1, 1)
        except OSError:
            fds = []
        finally:
            handle.close()
        return pid, (socket.socket(fileno=fds[0]) if fds else None)

    def stop_children(self) -> None:
        for pid in [*self.children, *([self.spare[0]] if self.spare else [])]:
            _kill_group(pid)
        for folder in self.folders.values():
            shutil.rmtree(folder, ignore_errors=True)

    def sweep_strays(self) -> None:
        """Alone in our PID namespace with our steps: end every process but us, our parent
        (the namespace's init), the spare and what runs in a step still running (each step
        is a session of its own). What an ended step daemonized is gone now."""
        keep = {1, os.getpid(), *([self.spare[0]] if self.spare else []), *self.children}
        # their session ids; the spare's too: it may have become a step the server has not heard of
        running = {*self.children, *([self.spare[0]] if self.spare else [])}
        for _ in range(50):  # a fork racing the sweep is caught on a later round
            strays = [pid for pid in (int(n) for n in os.listdir("/proc") if n.isdigit())
                      if pid not in keep and _session(pid) not in (-1, *running)]
            if not strays:
                return
            for pid in strays:  # not our children: the namespace's init reaps them
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def wipe_shared(self) -> None:
        """What steps left where the next could find it (/tmp beside the step directories in
        use, /dev/shm): gone, so nothing is passed, planted or left to fill the space."""
        for root, keep in ((self.tmp_root, set(self.folders.values())), ("/dev/shm", set())):
            try:
                names = os.listdir(root)
            except OSError:
                continue
            for name in names:
                path = os.path.join(root, name)
                if path in keep:
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass

    def clients_gone(self) -> None:
        """A client that hangs up before its step ends (its worker died): end the step."""
        gone = {fd for fd, _ in self.hangups.poll(0)}
        for pid, conn in list(self.children.items()):
            if conn.fileno() in gone:
                self.hangups.unregister(conn.fileno())
                _kill_group(pid)

    def reap(self) -> None:
        while True:
            try:
                os.read(self.wakeup_r, 4096)
            except BlockingIOError:
                break
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            _kill_group(pid)  # what the step left running ends with it
            if self.spare and self.spare[0] == pid:  # it died, having taken a connection or not
                _, taken = self._claim_spare()
                if taken is not None:
                    self.children[pid] = taken
            conn = self.children.pop(pid, None)
            if self.sandboxed:
                self.sweep_strays()
            folder = self.folders.pop(pid, None)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            if self.sandboxed:
                self.wipe_shared()
            if conn is None:
                continue
            try:
                self.hangups.unregister(conn.fileno())
            except (FileNotFoundError, ValueError):
                pass
            try:
                conn.setblocking(True)
                conn.settimeout(5)
                if os.WIFSIGNALED(status):
                    send(conn, {"type": "exit", "signal": os.WTERMSIG(status)})
                else:
                    send(conn, {"type": "exit", "code": os.WEXITSTATUS(status)})
            except OSError:
                pass
            conn.close()


def run_child(conn: socket.socket, folder: str) -> typing.NoReturn:
    """In the child: read the request, run it in ``folder``, report; always ends with os._exit."""
    code = 0
    try:
        conn.settimeout(10)
        header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 4)
        header += recv_exact(conn, HEADER.size - len(header))
        request = _loads(recv_exact(conn, HEADER.unpack(header)[0]))
        conn.settimeout(None)
        env = {**(request.get("env") or {}), "HOME": folder, "TMPDIR": folder}
        os.chdir(folder)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if request.get("cpu_s"):
            seconds = int(request["cpu_s"])
            resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
        if request.get("mode") == "exec":
            _exec(conn, request, fds, env)
            return
        log_fd = fds[0] if fds else os.open(os.devnull, os.O_WRONLY)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.environ.clear()
        os.environ.update(env)
        report = execute(request["code"], request["args"])
        sys.stdout.flush()
        sys.stderr.flush()
        send(conn, report)  # the logs are complete before the caller hears the result
    except BaseException:  # a failure of the reporting itself
        code = 70
    finally:
        os._exit(code)


def _exec(conn: socket.socket, request: dict, fds: list[int], env: dict) -> None:
    """A command step: its files written in its directory, then ``argv`` spawned with
    stdout, stderr (and fd 3) given, in this child's session; its end reported at once (the
    caller need not wait for the server to reap this child)."""
    for name, text in (request.get("files") or {}).items():
        # never through something planted there: a step's directory is new, nothing may be in it
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(fd, "w") as handle:
            handle.write(text)
    for name, target in (request.get("links") or {}).items():
        os.symlink(target, name)
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    actions += [(os.POSIX_SPAWN_DUP2, fd, wanted) for wanted, fd in enumerate(fds, start=1)]
    argv = request["argv"]
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    for fd in fds:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        send(conn, {"type": "exited", "signal": os.WTERMSIG(status)})
    else:
        send(conn, {"type": "exited", "code": os.WEXITSTATUS(status)})


def _rehearse() -> None:
    """A spare does what every step does, with nothing, before a step waits for it: what that
    writes of the memory it shares with the server (until written) is copied now, not on the
    step's time. Nothing of it stays: the step's environment and namespace replace it."""
    request = _loads(_dumps({"code": "def main(x: int) -> int:\n    return x + 1\n", "args": {"x": 1},
                             "env": dict(os.environ)}))
    os.environ.clear()
    os.environ.update(request["env"])
    _dumps(execute(request["code"], request["args"]))


def _prepare_stdio() -> None:
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the child ends with os._exit
    # Bound to descriptors 1 and 2, which become the step's log when it is handed over.
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)


def execute(source: str, args: dict) -> dict:
    """Run the step's ``main`` with ``args``; the message to send back."""
    linecache.cache["<step>"] = (len(source), None, source.splitlines(True), "<step>")
    namespace: dict = {"__name__": "__step__"}
    try:
        exec(compile(source, "<step>", "exec"), namespace)  # noqa: S102 - running the step is the point
        main = namespace.get("main")
        if not callable(main):
            return _error("the step defines no main() function")
        problem = check_arguments(main, args)
        if problem:
            return _error(problem)
        result = main(**args)
    except SystemExit as exc:
        return _error(f"sys.exit({exc.code!r}) called before main() returned")
    except BaseException as exc:  # the user's code failed: report it, the traceback to the logs
        _print_user_traceback(exc)
        return _error(f"{type(exc).__name__}: {exc}")
    try:
        # NaN and infinities are not JSON: refused here, not at the database
        return {"type": "result", "ok": True, "result": _loads(_dumps(result, allow_nan=False))}
    except (TypeError, ValueError) as exc:
        return _error(f"result is not JSON serializable: {exc}")


def _error(message: str) -> dict:
    return {"type": "result", "ok": False, "error": message}


def _print_user_traceback(exc: BaseException) -> None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<step>"]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(exc), exc)
    sys.stderr.write("".join(lines))


def _session(pid: int) -> int:
    """The session a live process is in; -1 for one that ended (a zombie, or gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return -1
    return -1 if fields[0] == b"Z" else int(fields[3])


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _undumpable() -> None:
    """No process of the step user may read this one's memory or attach to it (/proc/<pid>/mem,
    ptrace): steps run as the same user. Inherited by forks, so steps are too."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass


def main() -> None:
    # `python -c` puts the working directory first on sys.path: a module a step left there
    # would be imported by the next. Steps import from the interpreter's paths only.
    while "" in sys.path:
        sys.path.remove("")
    _undumpable()
    listen_fd, rest = int(sys.argv[1]), sys.argv[2:]
    sandboxed = "--sandboxed" in rest
    preload = [m for m in rest if m != "--sandboxed"]
    for module in preload:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001, S112 - the step importing it reports the error itself
            continue
    gc.freeze()  # what is imported now stays shared with every child, untouched by its GC
    server = Server(listen_fd, sandboxed)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    server.serve()


if __name__ == "__main__":
    main()
