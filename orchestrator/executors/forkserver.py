"""The fork server: a pre-imported Python that forks one child per step.

Run as a script (``python forkserver.py SOCKET [MODULE ...]``) by
:class:`~orchestrator.executors.python.PythonExecutor`, possibly with another
environment's interpreter, so it uses the standard library only.

Protocol on the Unix socket, every message a 4-byte big-endian length and a JSON object:
the client sends the 4-byte length of its request with the log file descriptor attached,
then the request ``{"code", "args", "env"}``; the child answers ``{"type": "pid"}`` then ``{"type":
"result"}``; the server, having reaped the child, sends ``{"type": "exit"}`` and closes.
"""
from __future__ import annotations

import gc
import importlib
import inspect
import io
import json
import linecache
import os
import selectors
import signal
import socket
import struct
import sys
import traceback
import types
import typing

_HEADER = struct.Struct(">I")
_SCALARS = (int, float, str, bool, list, dict)
# Held here so a step that replaces json.dumps cannot break its own report.
_dumps, _loads = json.dumps, json.loads


def send(conn: socket.socket, message: dict) -> None:
    data = _dumps(message).encode()
    conn.sendall(_HEADER.pack(len(data)) + data)


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
    def __init__(self, path: str):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.children: dict[int, socket.socket] = {}  # child pid -> its client connection
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "reap")
        self.selector.register(sys.stdin, selectors.EVENT_READ, "parent")

    def serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self.accept()
                elif key.data == "reap":
                    self.reap()
                elif key.data == "parent":
                    if not sys.stdin.buffer.read1(4096):
                        return  # our parent is gone: so are we
                else:
                    self.client_gone(key.fileobj, key.data)

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            conn.settimeout(10)
            header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 1)
            header += recv_exact(conn, _HEADER.size - len(header))
            request = json.loads(recv_exact(conn, _HEADER.unpack(header)[0]))
        except (OSError, EOFError, ValueError, struct.error):
            conn.close()
            return
        log_fd = fds[0] if fds else os.open(os.devnull, os.O_WRONLY)
        pid = os.fork()
        if pid == 0:
            # Hold no other step's connection: its client waits for it to close.
            for other in self.children.values():
                other.close()
            self.listener.close()
            run_child(conn, log_fd, request)  # never returns
        os.close(log_fd)
        self.children[pid] = conn
        conn.setblocking(False)
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def client_gone(self, conn: socket.socket, pid: int) -> None:
        # The client sends nothing after its request: readable means it hung up.
        if self.children.get(pid) is not conn:
            return  # reaped in this same round: nothing left to stop
        try:
            if conn.recv(1):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.selector.unregister(conn)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

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
            try:
                os.killpg(pid, signal.SIGKILL)  # what the step left running ends with it
            except (ProcessLookupError, PermissionError):
                pass
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            try:
                self.selector.unregister(conn)
            except (KeyError, ValueError):
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


def run_child(conn: socket.socket, log_fd: int, request: dict) -> typing.NoReturn:
    """In the forked child: run ``main(**args)`` and report; always ends with os._exit."""
    code = 0
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        conn.setblocking(True)
        send(conn, {"type": "pid", "pid": os.getpid()})
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        sys.stdin = open(os.devnull)  # noqa: SIM115 - the child ends with os._exit
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
        os.environ.clear()
        os.environ.update(request.get("env") or {})
        report = execute(request["code"], request["args"])
        sys.stdout.flush()
        sys.stderr.flush()
        send(conn, report)  # the logs are complete before the caller hears the result
    except BaseException:  # a failure of the reporting itself
        code = 70
    finally:
        os._exit(code)


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
        return {"type": "result", "ok": True, "result": _loads(_dumps(result))}
    except (TypeError, ValueError) as exc:
        return _error(f"result is not JSON serializable: {exc}")


def _error(message: str) -> dict:
    return {"type": "result", "ok": False, "error": message}


def _print_user_traceback(exc: BaseException) -> None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<step>"]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(exc), exc)
    sys.stderr.write("".join(lines))


def check_arguments(main: typing.Callable, args: dict) -> str | None:
    """Why ``main(**args)`` does not fit main's signature and simple type hints, or None."""
    try:
        signature = inspect.signature(main, eval_str=True)
    except (NameError, TypeError, ValueError):
        signature = inspect.signature(main)
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in args:
        if name not in params and not takes_any:
            return f"main() takes no argument '{name}'"
    for name, param in params.items():
        if param.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        if name not in args:
            if param.default is inspect.Parameter.empty:
                return f"main() is missing argument '{name}'"
            continue
        if param.annotation is not inspect.Parameter.empty:
            problem = _type_problem(args[name], param.annotation)
            if problem:
                return f"argument '{name}': {problem}"
            if param.annotation is float and isinstance(args[name], int):
                args[name] = float(args[name])
    return None


def _type_problem(value: object, hint: object) -> str | None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if any(_type_problem(value, option) is None for option in options):
            return None
        names = " or ".join(_name(o) for o in options)
        return f"expected {names}, got {_name(type(value))}"
    if hint is type(None):
        return None if value is None else f"expected None, got {_name(type(value))}"
    expected = origin or hint
    if expected not in _SCALARS:
        return None  # a hint we do not check
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return None
    if expected is int and isinstance(value, bool):
        return "expected int, got bool"
    if not isinstance(value, expected):  # type: ignore[arg-type]
        return f"expected {expected.__name__}, got {_name(type(value))}"
    return None


def _name(kind: object) -> str:
    return "None" if kind is type(None) else getattr(kind, "__name__", str(kind))


def main() -> None:
    path, preload = sys.argv[1], sys.argv[2:]
    for module in preload:
        importlib.import_module(module)
    gc.freeze()  # what is imported now stays shared with every child, untouched by its GC
    server = Server(path)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    server.serve()


if __name__ == "__main__":
    main()
