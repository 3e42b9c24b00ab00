"""Test hosts: network namespaces joined to this one by veth pairs, as machines on a LAN.

This namespace plays the machine of the broker and the database: on each host's link it
listens on the broker's and the database's ports and relays them to the shared RabbitMQ and
PostgreSQL (which listen on 127.0.0.1 only, and let guest log in from the loopback only). A
host reaches them at its gateway address, over its veth, as a worker on another machine
would; killing every process of a host's namespace is that machine dying. Needs root and
``ip``; names begin with ``mrtest<pid>``, so that a session removes what a dead one left.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import threading

import pytest

PREFIX = "mrtest"
NAME = re.compile(rf"^{PREFIX}(\d+)h\d+$")


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)} exited {done.returncode}: {done.stderr}")
    return done


def usable() -> str | None:
    """Why test hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if not all(shutil.which(tool) for tool in ("ip", "nsenter", "unshare")):
        return "needs ip (iproute2), nsenter and unshare (util-linux)"
    probe = f"{PREFIX}{os.getpid()}h99"
    if _ip("netns", "add", probe, check=False).returncode != 0:
        return "ip netns add is refused here"
    _ip("netns", "del", probe, check=False)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    """A /16 of 10/8 that no interface or route of this machine uses."""
    taken = _ip("-4", "route", "show", "table", "all").stdout + _ip("-4", "addr").stdout
    for second in range(200, 250):
        net = ipaddress.IPv4Network(f"10.{second}.0.0/16")
        if f"10.{second}." not in taken:
            return net
    raise RuntimeError("no free 10.x.0.0/16 for test hosts")


class Relay:
    """TCP relays on this side of the links to services on 127.0.0.1, in a thread of their own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="test-hosts-relay")
        self.thread.start()
        self.servers: list[asyncio.base_events.Server] = []

    def listen(self, address: str, port: int, target_port: int) -> None:
        async def start() -> asyncio.base_events.Server:
            return await asyncio.start_server(lambda r, w: self._pipe(r, w, target_port), address, port)

        self.servers.append(asyncio.run_coroutine_threadsafe(start(), self.loop).result(10))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target_port: int) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()  # the other side sees the end, as over a direct connection

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Host:
    """One test host: a network namespace with a veth to this one and a hostname of its own."""

    def __init__(self, index: int, subnet: ipaddress.IPv4Network):
        self.name = f"{PREFIX}{os.getpid()}h{index}"
        self.hostname = f"host{index}"
        self.gateway = str(subnet.network_address + (index << 8) + 1)  # this side: the services
        self.address = str(subnet.network_address + (index << 8) + 2)
        outside, inside = f"mrv{os.getpid() % 100000}o{index}", f"mrv{os.getpid() % 100000}i{index}"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            _ip("link", "set", inside, "netns", self.name)
            _ip("addr", "add", f"{self.gateway}/24", "dev", outside)
            _ip("link", "set", outside, "up")
            for argv in (("addr", "add", f"{self.address}/24", "dev", inside), ("link", "set", inside, "up"),
                         ("link", "set", "lo", "up")):
                _ip("-n", self.name, *argv)
        except BaseException:
            _ip("link", "del", outside, check=False)  # gone with the namespace once moved there
            self.remove()
            raise

    @property
    def command(self) -> list[str]:
        """What runs a command on this host: in its namespace, under its own hostname.

        nsenter, not ``ip netns exec``: that one mounts a /sys of its own, without the cgroups
        the step sandbox limits steps with."""
        return ["nsenter", f"--net=/run/netns/{self.name}", "unshare", "--uts", "sh", "-c",
                f'hostname {self.hostname} && exec "$@"', "sh"]

    def pids(self) -> list[int]:
        listed = _ip("netns", "pids", self.name, check=False).stdout.split()
        return [int(p) for p in listed if p.isdigit()]

    def crash(self) -> None:
        """SIGKILL every process on the host, as when its machine dies."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        """Kill what runs there and delete the namespace (its veth goes with it). Safe twice."""
        self.crash()
        _ip("netns", "del", self.name, check=False)


def remove_stale() -> None:
    """Delete the namespaces of sessions that are gone."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = NAME.match(name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            _ip("netns", "del", name, check=False)


@pytest.fixture(scope="module")
def lan_hosts():
    """Make hosts: ``make(n)`` returns n hosts, each reaching the broker and the database at
    its gateway on their usual ports; all are removed after the module, whatever happened."""
    why = usable()
    if why:
        pytest.skip(why)
    remove_stale()
    subnet = _free_subnet()
    relay = Relay()
    made: list[Host] = []

    def make(count: int, ports: tuple[int, ...]) -> list[Host]:
        for _ in range(count):
            host = Host(len(made) + 1, subnet)
            made.append(host)
            for port in ports:
                relay.listen(host.gateway, port, port)
        return made[-count:]

    try:
        yield make
    finally:
        for host in made:
            host.remove()
        relay.close()
