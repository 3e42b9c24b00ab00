"""The step sandbox: what a step's processes can reach.

Every step server (:mod:`orchestrator.executors.server`) starts inside one sandbox and
stays there; its steps are forked inside it, so the sandbox costs once per server, not per
step (a ``bwrap`` start costs about 5 ms here). A sandbox is

* **an unprivileged user** (``MILLRACE_STEP_USER``, created at worker start when missing),
  with no capabilities and no way to gain any: the step cannot read what the worker's
  user owns, signal the worker or write its files;
* **bubblewrap namespaces**: its own PID namespace (no other process, the worker's
  ``/proc/<pid>/environ`` included, is visible), IPC and UTS; the file system read-only
  with a private ``/tmp`` of its own size and an empty ``/run`` (no daemon's socket),
  ``MILLRACE_HOME`` (and ``MILLRACE_SANDBOX_HIDE``) hidden, the environment it runs in
  mounted read-only under ``/run/millrace``; with
  ``network: none``, a network namespace with no interface but loopback;
* **a cgroup** (v1 or v2, whichever the machine has): a memory and a process limit,
  set before each step, so one step's fork loop or memory hog never starves another.

The server's environment is built from nothing (``process.base_env``): no credential of
the worker's database or broker is anywhere a step can look.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("millrace.sandbox")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot start here; the message says what to install or set."""


@dataclass(frozen=True)
class Sandbox:
    """How a step server is confined (see the module's text)."""

    uid: int
    gid: int
    hidden: tuple[Path, ...] = ()  # mounted over by an empty directory

    def command(self, argv: list[str], *, network: str, disk_mb: int,
                mounts: tuple[tuple[Path, str], ...] = ()) -> list[str]:
        """``argv`` wrapped: inside bubblewrap, then as the step user with no capabilities.

        bubblewrap runs as root (the worker's user) so that it can mount what the step may
        read (``mounts``: host path -> path inside, under ``/run/millrace``) from wherever it
        is, even below a directory the step user could not enter; only then does
        ``setpriv`` drop to the step user, for good (``--no-new-privs``: no setuid binary
        gives anything back)."""
        wrapped = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
                   "--unshare-uts", "--unshare-cgroup-try"]
        if network == "none":
            wrapped.append("--unshare-net")
        wrapped += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                    "--size", str(disk_mb << 20), "--perms", "1777", "--tmpfs", "/tmp",
                    # POSIX shared memory (multiprocessing needs it), within the same disk size
                    "--size", str(disk_mb << 20), "--perms", "1777", "--tmpfs", "/dev/shm", "--tmpfs", "/run"]
        for path in self.hidden:
            if path.exists():
                wrapped += ["--tmpfs", str(path)]
        if mounts:
            wrapped += ["--perms", "0755", "--dir", "/run/millrace"]  # bwrap would make it 0700
        for source, target in mounts:
            wrapped += ["--ro-bind", str(source), target]
        return [*wrapped, "--", "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *argv]


def step_user(name: str) -> tuple[int, int]:
    """The step user's uid and gid; created (a system user with no home and no shell) when
    the worker may create users and it does not exist yet."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if os.geteuid() != 0:
            raise SandboxUnavailable(f"the step user '{name}' does not exist and only root can create it: "
                                     f"useradd --system --no-create-home --shell /usr/sbin/nologin {name}") from None
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                               "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True)
        if made.returncode != 0 and "already exists" not in made.stderr:
            raise SandboxUnavailable(f"could not create the step user '{name}': {made.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise SandboxUnavailable(f"the step user '{name}' is root; steps must run as an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def check(sandbox: Sandbox) -> None:
    """Start one sandbox and run ``true`` in it; raises SandboxUnavailable saying why not."""
    for tool, package in (("bwrap", "bubblewrap"), ("setpriv", "util-linux")):
        if shutil.which(tool) is None:
            raise SandboxUnavailable(f"`{tool}` is not installed: apt-get install {package} (or set "
                                     "MILLRACE_SANDBOX=off to run steps unconfined)")
    if os.geteuid() != 0:
        raise SandboxUnavailable("the worker must start as root to run steps as the step user (or set "
                                 "MILLRACE_SANDBOX=off to run steps unconfined, as the worker's user)")
    tried = subprocess.run(sandbox.command(["/bin/true"], network="none", disk_mb=1), capture_output=True,
                           text=True, timeout=30)
    if tried.returncode != 0:
        raise SandboxUnavailable(f"bubblewrap cannot start a sandbox here: {tried.stderr.strip()[:300]} (user "
                                 "namespaces may be disabled: sysctl kernel.unprivileged_userns_clone=1)")
    if Cgroups.root() is None:
        raise SandboxUnavailable("no writable pids and memory cgroups under /sys/fs/cgroup: step limits need them")


class Cgroups:
    """The pids and memory cgroups of one step server (v1: one per controller; v2: one)."""

    def __init__(self, name: str):
        root = self.root()
        if root is None:
            raise SandboxUnavailable("no writable pids and memory cgroups")
        self.v2 = root == "v2"
        own = _own_cgroups()
        if self.v2:
            self.dirs = {"unified": CGROUP_ROOT / own.get("", "/").lstrip("/") / name}
        else:
            self.dirs = {c: CGROUP_ROOT / c / own.get(c, "/").lstrip("/") / name for c in ("pids", "memory")}
        for folder in self.dirs.values():
            folder.mkdir(exist_ok=True)
        pids, memory = (self.dirs["unified"],) * 2 if self.v2 else (self.dirs["pids"], self.dirs["memory"])
        events = [(pids / "pids.events", "max"),
                  (memory / ("memory.events" if self.v2 else "memory.oom_control"), "oom_kill")]
        # held open: read twice per step, an open and a close each would cost more than the read
        self._events = [(os.open(path, os.O_RDONLY | os.O_CLOEXEC), key) for path, key in events]

    @staticmethod
    def root() -> str | None:
        """"v1" or "v2" when this process may make pids and memory cgroups, else None."""
        if (CGROUP_ROOT / "cgroup.controllers").exists():
            controllers = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
            return "v2" if {"pids", "memory"} <= set(controllers) and os.access(CGROUP_ROOT, os.W_OK) else None
        ok = all(os.access(CGROUP_ROOT / c, os.W_OK) for c in ("pids", "memory"))
        return "v1" if ok else None

    @property
    def procs(self) -> list[Path]:
        """The files a process writes its pid to, to join these cgroups."""
        return [folder / "cgroup.procs" for folder in self.dirs.values()]

    def limit(self, memory_mb: int, processes: int) -> None:
        if self.v2:
            folder = self.dirs["unified"]
            _write(folder / "memory.max", memory_mb << 20)
            _write(folder / "memory.swap.max", 0, optional=True)
            _write(folder / "pids.max", processes)
            return
        memory = self.dirs["memory"]
        # raising the limit: memsw first (it must stay >= the limit); lowering: the limit first
        for name in ("memory.memsw.limit_in_bytes", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
            _write(memory / name, memory_mb << 20, optional=True)
        _write(self.dirs["pids"] / "pids.max", processes)

    def hits(self) -> tuple[int, int]:
        """How often the process limit refused a fork and the memory limit killed, so far."""
        refused, killed = (_event(fd, key) for fd, key in self._events)
        return refused, killed

    def remove(self) -> None:
        for fd, _ in self._events:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._events = []
        for folder in self.dirs.values():
            with contextlib.suppress(OSError):
                folder.rmdir()


def _own_cgroups() -> dict[str, str]:
    found = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _write(path: Path, value: int, optional: bool = False) -> None:
    try:
        path.write_text(str(value))
    except OSError:
        if not optional:
            raise


def _event(fd: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in os.pread(fd, 4096, 0).decode().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0
