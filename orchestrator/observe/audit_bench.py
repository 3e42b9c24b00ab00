"""``millrace bench audit``: audit events per second, inserted directly (one transaction each,
as a step transition writes them) by ``clients`` connections for ``seconds``.

Each client writes the events of a run of its own, so chains never meet; with ``one_chain``
they all write one run's events, which queue on that chain's head as every event of the
installation queued on one lock before chains per run (migration 0027).
"""
from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import Engine

from orchestrator.store.audit import audit
from orchestrator.store.database import make_engine


def measure_audit_inserts(engine: Engine, clients: int, seconds: float, one_chain: bool = False) -> float:
    """Events per second, all clients together."""
    pool = make_engine(engine.url.render_as_string(hide_password=False), connections=clients)  # one each
    try:
        return _measure(pool, clients, seconds, one_chain)
    finally:
        pool.dispose()


def _measure(engine: Engine, clients: int, seconds: float, one_chain: bool) -> float:
    tag = uuid.uuid4().hex[:8]
    counts = [0] * clients
    start = threading.Barrier(clients + 1, timeout=60)

    def client(k: int, stop_at: list[float]) -> None:
        target = f"run:bench-audit-{tag}-{0 if one_chain else k}"
        with engine.connect() as conn:
            start.wait()
            while time.monotonic() < stop_at[0]:
                with conn.begin():
                    audit(conn, "bench", "bench.audit", target, n=counts[k])
                counts[k] += 1

    stop_at = [0.0]
    threads = [threading.Thread(target=client, args=(k, stop_at)) for k in range(clients)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    stop_at[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - began)
