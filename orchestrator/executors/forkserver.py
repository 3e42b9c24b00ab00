"""The fork server: a pre-imported Python that forks one child per step.

Run as a script (``python forkserver.py SOCKET [MODULE ...]``) by
:class:`~orchestrator.executors.python.PythonExecutor`, possibly with another
environment's interpreter, so it uses the standard library only.

A child is forked *before* it is needed (a spare, already in its own session), so a
request only waits for the hand-over of its connection, not for a fork.

Protocol on the Unix socket, every message a 4-byte big-endian length and a JSON object:
the client sends the 4-byte length of its request with the log file descriptor attached,
then the request ``{"code", "args", "env"}``; the child answers ``{"type": "pid"}`` then
``{"type": "result"}``; the server, having reaped the child, sends ``{"type": "exit"}``.
"""
from __future__ import annotations

import gc
import importlib
import inspect
import io
import json
import linecache
import os
import select
import selectors
import signal
import socket
import struct
import sys
import traceback
import types
import typing

HEADER = struct.Struct(">I")
_SCALARS = (int, float, str, bool, list, dict)
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
        # Watched for hang-ups only (the child reads the request from the same socket).
        self.hangups = select.epoll()
        self.selector.register(self.hangups.fileno(), selectors.EVENT_READ, "hangup")
        self.spare: tuple[int, socket.socket] | None = None  # a forked child awaiting a request
        self.fork_spare()

    def serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self.accept()
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
        """Fork the child that will take the next request, while nobody waits for it."""
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            ours.close()
            # Hold no other step's connection: its client waits for it to close.
            for other in self.children.values():
                other.close()
            self.listener.close()
            os.setsid()  # its own process group: a timeout kills everything it starts
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _prepare_stdio()
            try:
                _, fds, _, _ = socket.recv_fds(theirs, 1, 1)
            except OSError:
                fds = []
            if not fds:
                os._exit(0)  # the server went away before giving us work
            run_child(socket.socket(fileno=fds[0]))  # never returns
        theirs.close()
        self.spare = (pid, ours)

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        if self.spare is None:
            self.fork_spare()
        pid, handle = self.spare
        self.spare = None
        try:
            socket.send_fds(handle, [b"."], [conn.fileno()])
        except OSError:
            conn.close()  # the spare died: the client sees the connection end
            return
        finally:
            handle.close()
        self.children[pid] = conn
        self.hangups.register(conn.fileno(), select.EPOLLRDHUP)

    def stop_children(self) -> None:
        for pid in [*self.children, *([self.spare[0]] if self.spare else [])]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def clients_gone(self) -> None:
        """A client that hangs up before its step ends (its worker died): end the step."""
        gone = {fd for fd, _ in self.hangups.poll(0)}
        for pid, conn in list(self.children.items()):
            if conn.fileno() in gone:
                self.hangups.unregister(conn.fileno())
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
            if self.spare and self.spare[0] == pid:
                self.spare[1].close()
                self.spare = None
            conn = self.children.pop(pid, None)
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


def run_child(conn: socket.socket) -> typing.NoReturn:
    """In the child: read the request, run ``main(**args)``, report; always ends with os._exit."""
    code = 0
    try:
        conn.settimeout(10)
        header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 1)
        header += recv_exact(conn, HEADER.size - len(header))
        request = _loads(recv_exact(conn, HEADER.unpack(header)[0]))
        conn.settimeout(None)
        send(conn, {"type": "pid", "pid": os.getpid()})
        log_fd = fds[0] if fds else os.open(os.devnull, os.O_WRONLY)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
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
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001, S112 - the step importing it reports the error itself
            continue
    gc.freeze()  # what is imported now stays shared with every child, untouched by its GC
    server = Server(path)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    server.serve()


if __name__ == "__main__":
    main()
