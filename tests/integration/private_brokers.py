"""A Mosquitto, NATS (JetStream) or Redis server of a test's own, on a port of its own, to
take down and bring back for the listener's reconnect tests (the shared ones are never
stopped). Each runs in its own process group and folder, removed by ``remove``."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.services import free_port

URLS = {"mqtt": "mqtt://127.0.0.1:{port}", "nats": "nats://127.0.0.1:{port}", "redis": "redis://127.0.0.1:{port}/0"}


class PrivateBroker:
    def __init__(self, kind: str):
        self.kind = kind
        self.port = free_port()
        self.url = URLS[kind].format(port=self.port)
        self.folder = Path(tempfile.mkdtemp(prefix=f"millrace-private-{kind}-"))
        self.proc: subprocess.Popen | None = None
        self.start()

    def _argv(self) -> list[str]:
        if self.kind == "mqtt":
            config = self.folder / "mosquitto.conf"
            config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
            return ["mosquitto", "-c", str(config)]
        if self.kind == "nats":  # JetStream on disk: its streams and consumers outlive a restart
            return ["nats-server", "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.folder)]
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir",
                str(self.folder)]

    def start(self, timeout: float = 30) -> None:
        log = open(self.folder / "server.log", "a")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(self._argv(), cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline and self.proc.poll() is None, self.log()
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def log(self) -> str:
        return (self.folder / "server.log").read_text()[-3000:]

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
