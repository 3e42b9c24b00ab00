"""Private PostgreSQL clusters and RabbitMQ nodes, for tests that stop, restart or break them.

The machine's own services (PostgreSQL on 5432, RabbitMQ on 5672) are shared with other
checkouts' test sessions and with people: a test never takes them down. A test that needs an
outage makes one of these instead, on ports of its own, and breaks that.

Each is named ``mrtest_<owner pid>_<random>``: a session killed before its finalizers ran
leaves them behind, and :func:`remove_stale` (run at every session start) drops those whose
owner process is dead. Nothing without that prefix is ever stopped or dropped.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Container
from pathlib import Path

import pytest

PREFIX = "mrtest_"
# The owner's pid is in the name: that is how a later session tells a stale one.
NAME = re.compile(rf"^{PREFIX}(\d+)_[0-9a-f]{{8}}$")
PG_LIB = Path("/usr/lib/postgresql")
PG_ETC = Path("/etc/postgresql")
# Debian runs RabbitMQ's scripts through a wrapper that su's to the rabbitmq user (and so to
# its Erlang cookie and a new session); the scripts themselves run as whoever calls them.
RABBIT_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
RABBIT_BASE = Path(tempfile.gettempdir()) / "millrace-test-rabbit"


def _new_name() -> str:
    return f"{PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"


def _owner_alive(name: str) -> bool:
    """Whether the process that made ``name`` still runs (True for names not of ours)."""
    match = NAME.match(name)
    if match is None:
        return True
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port(taken: Container[int] = ()) -> int:
    """A TCP port free on 127.0.0.1, below the ephemeral range: a server stopped for an outage
    test must find its port still free when it starts again, and outgoing connections take
    their local ports from the ephemeral range."""
    low = 20000
    try:
        high = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) - 1
    except (OSError, ValueError, IndexError):
        high = 32767
    for _ in range(200):
        port = random.randint(low, high)
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


def _run(argv: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run a service tool; a failure raises with what it printed."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


# --- PostgreSQL ----------------------------------------------------------------------------

def postgres_version() -> str | None:
    """The newest PostgreSQL server installed under /usr/lib/postgresql, or None."""
    if not PG_LIB.is_dir():
        return None
    versions = [p.name for p in PG_LIB.iterdir() if (p / "bin" / "postgres").exists()]
    return max(versions, key=lambda v: [int(x) for x in re.findall(r"\d+", v)], default=None)


def _postgres_missing() -> str | None:
    for tool in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters"):
        if shutil.which(tool) is None:
            return f"needs Debian's {tool} (postgresql-common) for a private PostgreSQL cluster"
    if postgres_version() is None:
        return f"needs a PostgreSQL server under {PG_LIB}"
    return None


def _clusters() -> list[dict]:
    """Every cluster pg_lsclusters knows (the machine's too: read, never touched)."""
    listed = subprocess.run(["pg_lsclusters", "--json"], capture_output=True, text=True, timeout=30)
    return json.loads(listed.stdout or "[]") if listed.returncode == 0 else []


class PrivatePostgres:
    """A PostgreSQL cluster of its own (``pg_createcluster``) on a free port of 127.0.0.1.

    Created and started by the constructor; ``stop``/``start``/``restart`` keep its data,
    ``remove`` drops it. The superuser is ``postgres``: with ``password`` it must give that
    password over TCP (scram-sha-256); without, it is trusted. Skips the test where Debian's
    cluster tools or a server are not installed.
    """

    def __init__(self, password: str | None = None):
        missing = _postgres_missing()
        if missing:
            pytest.skip(missing)
        self.version = postgres_version()
        self.name = _new_name()
        self.port = free_port({int(c["port"]) for c in _clusters() if "port" in c})
        self.password = password
        began = time.monotonic()
        self._create()
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        self.ready_in = time.monotonic() - began  # seconds from nothing to answering

    def _create(self) -> None:
        argv = ["pg_createcluster", self.version, self.name, "-p", str(self.port),
                # never started by the machine's boot: it lives as long as its test session
                "--start-conf=manual"]
        if self.password is None:
            _run([*argv, "--", "--auth=trust", "--no-sync"])
            return
        # initdb reads the password from a file, as the cluster's owner (postgres)
        with tempfile.NamedTemporaryFile("w", prefix="mrtest-pw-", delete=False) as pwfile:
            pwfile.write(self.password + "\n")
        try:
            if os.geteuid() == 0:
                shutil.chown(pwfile.name, "postgres")
            _run([*argv, "--", "--auth-local=peer", "--auth-host=scram-sha-256",
                  f"--pwfile={pwfile.name}", "--no-sync"])
        finally:
            os.unlink(pwfile.name)

    def _ctl(self, action: str, *more: str) -> None:
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", *more, self.version, self.name, action])

    @property
    def _userinfo(self) -> str:
        return "postgres" if self.password is None else f"postgres:{self.password}"

    def libpq_url(self, database: str = "postgres") -> str:
        """A libpq/psycopg connection URL of ``database``."""
        return f"postgresql://{self._userinfo}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str = "postgres") -> str:
        """An SQLAlchemy URL (psycopg 3) of ``database``."""
        return f"postgresql+psycopg://{self._userinfo}@127.0.0.1:{self.port}/{database}"

    def create_database(self, database: str) -> str:
        """Create ``database``; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(self.libpq_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        return self.url(database)

    def start(self) -> None:
        """Start it; returns once it accepts connections."""
        began = time.monotonic()
        self._ctl("start")
        self.started_in = time.monotonic() - began

    def stop(self, mode: str = "fast") -> None:
        """Stop it: ``fast`` disconnects clients and shuts down cleanly, ``immediate`` is a crash."""
        self._ctl("stop", "-m", mode)

    def restart(self, down_for: float = 0.0, mode: str = "fast") -> None:
        """Stop it, stay down ``down_for`` seconds, start it again; its data stays."""
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    @property
    def exists(self) -> bool:
        return (PG_ETC / self.version / self.name).exists()

    def remove(self) -> None:
        """Stop it and delete it, data, configuration and log. Safe to call twice."""
        if self.exists:
            _drop_cluster(self.version, self.name)


def _drop_cluster(version: str, name: str) -> None:
    if not NAME.match(name):  # the machine's `main`, or anyone else's: never
        raise ValueError(f"not a test cluster: {name}")
    subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=120)


def _test_clusters() -> list[tuple[str, str]]:
    """(version, name) of every cluster whose name is one of ours."""
    if not PG_ETC.is_dir():
        return []
    return [(v.name, c.name) for v in PG_ETC.iterdir() if v.is_dir()
            for c in v.iterdir() if NAME.match(c.name)]


# --- RabbitMQ ------------------------------------------------------------------------------

def _rabbit_script(name: str) -> str | None:
    script = RABBIT_SCRIPTS / name
    if script.exists():
        return str(script)
    return shutil.which(name)


class PrivateRabbit:
    """A RabbitMQ node of its own: its own node name, AMQP and distribution ports on
    127.0.0.1, no plugins, and its data, logs, configuration and Erlang cookie in a folder of
    its own, removed with it.

    Started by the constructor. ``stop_app``/``start_app`` stop and start the broker inside a
    running node; ``stop``/``start``/``restart`` the whole node; messages and queues marked
    durable survive both. ``url`` is guest's (guest may log in over the loopback). Skips the
    test where rabbitmq-server is not installed.
    """

    def __init__(self):
        if _rabbit_script("rabbitmq-server") is None or _rabbit_script("rabbitmqctl") is None:
            pytest.skip("needs rabbitmq-server for a private RabbitMQ node")
        self.name = _new_name()
        self.node = f"{self.name}@localhost"
        self.folder = RABBIT_BASE / self.name
        self.port = free_port()
        self.dist_port = free_port({self.port})
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.proc: subprocess.Popen | None = None
        began = time.monotonic()
        self._lay_out()
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        self.ready_in = time.monotonic() - began

    def _lay_out(self) -> None:
        for sub in ("mnesia", "log", "home"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "enabled_plugins").write_text("[].\n")  # none: no management listener
        (self.folder / "rabbitmq-env.conf").write_text("")  # not the machine's NODENAME etc.
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "distribution.listener.interface = 127.0.0.1\n"
        )

    @property
    def env(self) -> dict[str, str]:
        """The environment rabbitmq-server and rabbitmqctl share to be this node."""
        folder = self.folder
        return {
            **os.environ,
            "HOME": str(folder / "home"),  # its own Erlang cookie, made on first start
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",  # should this node be the one to start epmd
        }

    def ctl(self, *argv: str, timeout: float = 120) -> str:
        """Run ``rabbitmqctl -n <this node> ...``; returns what it printed."""
        return _run([_rabbit_script("rabbitmqctl"), "-n", self.node, *argv], timeout=timeout,
                    env=self.env).stdout

    def start(self, timeout: float = 60) -> None:
        """Start the node; returns once the broker has booted and listens."""
        began = time.monotonic()
        log = open(self.folder / "server.out", "ab")  # noqa: SIM115 - the child keeps it
        with log:
            self.proc = subprocess.Popen([_rabbit_script("rabbitmq-server")], env=self.env,
                                         cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self._await_listener(timeout)
        self.ctl("await_startup", "--timeout", str(int(timeout)))
        self.started_in = time.monotonic() - began

    def _await_listener(self, timeout: float) -> None:
        # await_startup gives up at once while the node is not yet known to epmd: wait until
        # AMQP answers (the listener opens last in boot), then let await_startup confirm.
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {self.node} not up in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, chars: int = 3000) -> str:
        out = self.folder / "server.out"
        return out.read_text(errors="replace")[-chars:] if out.exists() else ""

    def stop_app(self) -> None:
        """Stop the broker inside the node: every connection drops, the node stays up."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")

    def stop(self, timeout: float = 60) -> None:
        """Stop the whole node cleanly (its data stays, for ``start``)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.ctl("stop")
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the node, stay down ``down_for`` seconds, start it again."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def remove(self) -> None:
        """Kill the node and delete its folder. Safe to call twice."""
        self._kill()
        shutil.rmtree(self.folder, ignore_errors=True)
        _tidy_base()


def _kill_stale_node(folder: Path) -> None:
    """SIGKILL the node whose pid file is in ``folder``, if that process is still that node."""
    try:
        pid = int((folder / "rabbit.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if folder.name.encode() in cmdline:  # not a pid reused by someone else
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _test_nodes() -> list[Path]:
    if not RABBIT_BASE.is_dir():
        return []
    return [p for p in RABBIT_BASE.iterdir() if NAME.match(p.name)]


# --- what a session leaves ----------------------------------------------------------------

def remove_stale() -> list[str]:
    """Drop the clusters and nodes whose owning session is dead; returns their names."""
    removed = []
    for version, name in _test_clusters():
        if not _owner_alive(name):
            _drop_cluster(version, name)
            removed.append(name)
    for folder in _test_nodes():
        if not _owner_alive(folder.name):
            _kill_stale_node(folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def left_by(pid: int) -> list[str]:
    """The clusters and nodes process ``pid`` made that still exist."""
    mine = f"{PREFIX}{pid}_"
    return ([f"PostgreSQL cluster {v}/{n}" for v, n in _test_clusters() if n.startswith(mine)]
            + [f"RabbitMQ node {p.name}@localhost ({p})" for p in _test_nodes() if p.name.startswith(mine)])


def remove_left_by(pid: int) -> None:
    """Remove what :func:`left_by` lists."""
    mine = f"{PREFIX}{pid}_"
    for version, name in _test_clusters():
        if name.startswith(mine):
            _drop_cluster(version, name)
    for folder in _test_nodes():
        if folder.name.startswith(mine):
            _kill_stale_node(folder)
            shutil.rmtree(folder, ignore_errors=True)
    _tidy_base()


def _tidy_base() -> None:
    try:
        RABBIT_BASE.rmdir()  # only when empty: another session may have a node there
    except OSError:
        pass
