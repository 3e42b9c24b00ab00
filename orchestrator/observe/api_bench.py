"""The API's own figures in ``millrace bench``: ``--scenario api``, what the API answers while
requests wait on runs, ``--scenario scrape``, what a ``/metrics`` scrape costs, and
``--scenario console``, what the console's runs pages cost, at the history the database holds
(seed one with ``millrace bench seed N``).

`millrace api` (gunicorn with the shipped settings) is started on a free port; twenty
``POST .../runs?wait=30`` hold runs that wait for an approval, and meanwhile ``/healthz``
and ``GET /api/v1/flows`` are timed one after another. Then the runs are cancelled, which
ends the waits. The figure to watch: the latency of the others while twenty wait.
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from orchestrator.store.access import Role, create_token, revoke_token

WAITING = 20
WAIT_S = 30
SAMPLES = 40
FLOW = "id: bench/held\nsteps:\n  - {id: gate, approval: {}}\n"


def measure(engine: Engine, *, progress: Any = lambda _: None) -> dict[str, Any]:
    """Latency of /healthz and a GET while WAITING requests wait on their runs."""
    token = create_token(engine, f"bench-api-{uuid.uuid4().hex[:8]}", Role.ADMIN, actor="bench")
    port = _free_port()
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "api", "--port", str(port)], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ})
    try:
        _ready(port, server)
        call = _Caller(port, token)
        call("PUT", "/api/v1/flows/bench/held", FLOW, "application/yaml")
        with ThreadPoolExecutor(WAITING) as pool:
            waits = [pool.submit(call, "POST", f"/api/v1/flows/bench/held/runs?wait={WAIT_S}", "{}")
                     for _ in range(WAITING)]
            time.sleep(1.5)  # every wait has reached its thread
            health = [call.timed("GET", "/healthz") for _ in range(SAMPLES)]
            listing = [call.timed("GET", "/api/v1/flows?limit=20") for _ in range(SAMPLES)]
            still_waiting = sum(not w.done() for w in waits)
            runs = call("GET", "/api/v1/runs?flow=bench/held&limit=200")["items"]
            for run in runs:
                if run["status"] in ("queued", "running", "suspended"):
                    call("POST", f"/api/v1/runs/{run['id']}/cancel", "{}")
            answered = [w.result()["status"] for w in waits]
        progress(f"api: /healthz p50 {statistics.median(health):.1f} ms, GET p50 {statistics.median(listing):.1f} ms "
                 f"with {still_waiting} waiting")
        return {
            "waiting": WAITING, "still_waiting_while_timed": still_waiting, "samples": SAMPLES,
            "healthz_p50_ms": round(statistics.median(health), 1), "healthz_max_ms": round(max(health), 1),
            "get_p50_ms": round(statistics.median(listing), 1), "get_max_ms": round(max(listing), 1),
            "waits_ended": sorted(set(answered)),
        }
    finally:
        server.terminate()
        server.wait(timeout=30)
        revoke_token(engine, _token_id(engine, token), "bench")


SCRAPES = 20


def measure_scrape(engine: Engine, *, progress: Any = lambda _: None) -> dict[str, Any]:
    """The median time to build the metrics exposition, once the history is folded (what an
    installation reaches after its first scrapes: each folds at most ``FOLD_BUDGET_S``)."""
    from orchestrator.observe.metrics import exposition
    from orchestrator.store import leases, stats
    from orchestrator.store.benchmarks import history_size

    began = time.perf_counter()
    with leases.held(engine, stats.METRICS_LOCK) as mine:  # as a scrape folds: never two at once
        if mine:
            stats.fold(engine, dt.datetime.now(dt.UTC) - stats.LAG, budget_s=float("inf"))
    folded_s = time.perf_counter() - began
    times = []
    for _ in range(SCRAPES):
        began = time.perf_counter()
        exposition(engine)
        times.append((time.perf_counter() - began) * 1000)
    runs, steps = history_size(engine)
    progress(f"scrape: p50 {statistics.median(times):.1f} ms at {runs} runs, {steps} step rows")
    return {"runs": runs, "step_rows": steps, "scrapes": SCRAPES, "scrape_p50_ms": round(statistics.median(times), 1),
            "scrape_max_ms": round(max(times), 1), "catch_up_fold_s": round(folded_s, 2)}


PAGES = ("/", "/?status=failed", "/?flow=bench/seed", "/flows")


def measure_console(engine: Engine, *, progress: Any = lambda _: None) -> dict[str, Any]:
    """The console's runs pages, rendered in this process (server time: the request through
    the app, no network): the median of 20 of each, at the history the database holds."""
    from orchestrator.cli.wiring import api_app
    from orchestrator.store.access import open_session
    from orchestrator.store.benchmarks import history_size

    token = create_token(engine, f"bench-console-{uuid.uuid4().hex[:8]}", Role.VIEWER, actor="bench")
    opened = open_session(engine, token)
    assert opened is not None
    client = api_app().test_client()
    client.set_cookie("millrace_session", opened[0])
    figures = {}
    for path in PAGES:
        client.get(path)  # warm: templates compiled, connections made
        times = []
        for _ in range(SCRAPES):
            began = time.perf_counter()
            answer = client.get(path)
            times.append((time.perf_counter() - began) * 1000)
            if answer.status_code != 200:
                raise RuntimeError(f"{path}: {answer.status_code}")
        figures[path] = {"p50_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
    revoke_token(engine, _token_id(engine, token), "bench")
    runs, steps = history_size(engine)
    progress(f"console: runs page p50 {figures['/']['p50_ms']} ms at {runs} runs")
    return {"runs": runs, "step_rows": steps, "pages": figures}


class _Caller:
    def __init__(self, port: int, token: str):
        self.port, self.token = port, token

    def __call__(self, method: str, path: str, body: str | None = None,
                 content_type: str = "application/json") -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT_S + 30)
        try:
            headers = {"Authorization": f"Bearer {self.token}"}
            if body is not None:
                headers["Content-Type"] = content_type
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            if answer.status >= 400:
                raise RuntimeError(f"{method} {path}: {answer.status} {data[:300]!r}")
            return json.loads(data) if data else {}
        finally:
            conn.close()

    def timed(self, method: str, path: str) -> float:
        began = time.perf_counter()
        self(method, path)
        return (time.perf_counter() - began) * 1000


def _ready(port: int, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("`millrace api` exited before it answered")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"`millrace api` did not answer /readyz in {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _token_id(engine: Engine, token: str) -> int:
    from orchestrator.store.access import authenticate

    found = authenticate(engine, token)
    assert found is not None
    return found.token_id
