"""``millrace bench scale``: what every periodic query and every list route costs at a large
history, and which index answers each.

The history is the seeder's (``millrace bench seed``: finished runs of ``bench/seed`` with ten
steps each, a tenth failed, and their audit events), written up to ``runs`` runs if the
database holds fewer, then ANALYZEd. Each periodic query (the sweeper's, the scheduler's, a
metrics scrape) is its store function, called in this process; each list route goes through
the API app in this process (server time, no network). Each is timed 20 times after a
warm-up. The statements each one ran are captured and EXPLAINed: a sequential scan of a
table that grows with history (``plans.HISTORY_TABLES``) is named in the result.

Goals: a sweeper or scheduler query under 10 ms, an API route (and a metrics scrape, which
is one) under 50 ms.
"""
from __future__ import annotations

import datetime as dt
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from orchestrator.store import plans
from orchestrator.store.plans import captured, seq_scans

FLOW = "bench/seed"
SAMPLES = 20
PERIODIC_GOAL_MS = 10.0
API_GOAL_MS = 50.0


def seed_flow_text(steps: int) -> str:
    """The seeded runs' flow: ``steps`` python steps, ``s0`` .. ``s<steps-1>``."""
    body = "\n".join(f"  - {{id: s{k}, python: \"def main():\\n    return {k}\"}}" for k in range(steps))
    return f"id: {FLOW}\nsteps:\n{body}\n"


def seed_to(engine: Engine, runs: int, steps: int = 10, *, progress: Any = lambda _: None) -> float:
    """Seed ``bench/seed`` runs until it has ``runs`` (what is there is reused); then ANALYZE.
    Returns the seconds seeding took (0 when nothing was missing)."""
    from orchestrator.definitions.parser import parse_flow
    from orchestrator.services.saving import save_flow
    from orchestrator.store.benchmarks import runs_of, seed_history

    held = runs_of(engine, FLOW)
    began = time.monotonic()
    if held < runs:
        text_ = seed_flow_text(steps)
        version = save_flow(engine, parse_flow(text_), text_, actor="bench")
        seed_history(engine, FLOW, version, runs - held, steps, tag=uuid.uuid4().hex,
                     progress=lambda done: progress(f"scale: seeded {held + done:,} runs"))
    seeded_s = time.monotonic() - began if held < runs else 0.0
    plans.analyze_history(engine)
    return seeded_s


def fold_history(engine: Engine) -> None:
    """Fold the metrics up to now, as the first scrapes after an upgrade do a day of records
    at a time: what is timed is a scrape's steady state, a few seconds of records."""
    from orchestrator.store import leases, stats

    with leases.held(engine, stats.METRICS_LOCK) as mine:
        if mine:
            stats.fold(engine, dt.datetime.now(dt.UTC) - stats.LAG, budget_s=float("inf"))


def periodic_queries(engine: Engine) -> dict[str, Callable[[], Any]]:
    """Each query the sweeper, the scheduler and a metrics scrape run, by name, as a call."""
    from orchestrator.store import admission, approvals, event_triggers, outbox, schedules, sql, stats
    from orchestrator.store.outbox import OwedKind

    def active_run() -> Any:
        with engine.connect() as conn:
            return schedules.active_run(conn, "bench-scale")

    def under_key() -> int:
        with engine.begin() as conn:
            return admission.running_under(conn, FLOW, "bench-scale")

    calls: dict[str, Callable[[], Any]] = {
        f"sweeper: owed {kind.value}": (lambda kind=kind: outbox.overdue(engine, {kind: 30.0})) for kind in OwedKind}
    calls |= {
        "sweeper: expired approvals": lambda: approvals.expired_approvals(engine),
        "scheduler: due schedules": lambda: schedules.due(engine, sql.now()),
        "scheduler: next due": lambda: schedules.next_due(engine),
        "scheduler: a schedule's active run": active_run,
        "concurrency: runs under a key": under_key,
        "metrics: scrape (stats)": lambda: stats.read_stats(engine, sql.now()),
        "fires of a schedule": lambda: schedules.fires_of(engine, "bench-scale"),
        "fires of an event trigger": lambda: event_triggers.fires_of(engine, "bench-scale", limit=50),
    }
    return calls


def list_routes(page_two: str) -> list[str]:
    """Each list route with its default order (and the runs page after the first)."""
    return ["/api/v1/runs?limit=50", f"/api/v1/runs?limit=50&cursor={page_two}", "/api/v1/runs?limit=50&status=failed",
            f"/api/v1/runs?limit=50&flow={FLOW}", "/api/v1/runs?limit=50&status=running",
            "/api/v1/flows?limit=50", "/api/v1/scripts?limit=50", "/api/v1/schedules?limit=50",
            "/api/v1/audit?limit=50", "/api/v1/audit?limit=50&action=run.", "/api/v1/tokens?limit=50",
            "/api/v1/variables?limit=50", "/api/v1/event-triggers?limit=50",
            "/", "/?status=failed", "/flows"]  # the console's runs and flows pages


@dataclass
class Figure:
    name: str
    goal_ms: float
    times_ms: list[float]
    scans: list[str] = field(default_factory=list)  # "Seq Scan on <table>" of a history table
    statements: int = 0

    def summary(self) -> dict[str, Any]:
        p50 = round(statistics.median(self.times_ms), 2)
        return {"name": self.name, "p50_ms": p50, "max_ms": round(max(self.times_ms), 2), "goal_ms": self.goal_ms,
                "statements": self.statements, "seq_scans": self.scans,
                "verdict": "ok" if p50 < self.goal_ms and not self.scans else "over"}


def timed(engine: Engine, name: str, goal_ms: float, call: Callable[[], Any]) -> Figure:
    with captured() as statements:
        call()  # warm, and what it runs is what is explained
    scans = sorted({s for statement, params in statements for s in seq_scans(engine, statement, params)})
    times = []
    for _ in range(SAMPLES):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return Figure(name, goal_ms, times, scans, len(statements))


def measure_scale(engine: Engine, *, runs: int = 1_000_000, steps: int = 10,
                  progress: Any = lambda _: None) -> dict[str, Any]:
    """Seed up to ``runs`` runs, then time and explain each periodic query and list route."""
    from orchestrator.cli.wiring import api_app
    from orchestrator.store.access import Role, authenticate, create_token, open_session, revoke_token
    from orchestrator.store.benchmarks import history_size

    seeded_s = seed_to(engine, runs, steps, progress=progress)
    fold_history(engine)
    figures = [timed(engine, name, API_GOAL_MS if name.startswith("metrics") else PERIODIC_GOAL_MS, call)
               for name, call in periodic_queries(engine).items()]
    token = create_token(engine, f"bench-scale-{uuid.uuid4().hex[:8]}", Role.ADMIN, actor="bench")
    opened = open_session(engine, token)
    assert opened is not None
    client = api_app().test_client()
    client.set_cookie("millrace_session", opened[0])
    headers = {"Authorization": f"Bearer {token}"}
    try:
        page_two = client.get("/api/v1/runs?limit=50", headers=headers).json["next_cursor"]
        for url in list_routes(page_two):
            def get(url: str = url) -> None:
                answer = client.get(url, headers=headers)
                if answer.status_code != 200:
                    raise RuntimeError(f"{url}: {answer.status_code} {answer.data[:300]!r}")
            figures.append(timed(engine, f"GET {url}", API_GOAL_MS, get))
    finally:
        found = authenticate(engine, token)
        if found is not None:
            revoke_token(engine, found.token_id, "bench")
    held_runs, held_steps = history_size(engine)
    results = [f.summary() for f in figures]
    over = [r["name"] for r in results if r["verdict"] != "ok"]
    progress(f"scale: {len(results) - len(over)} of {len(results)} within their goal at {held_runs:,} runs")
    return {"runs": held_runs, "step_rows": held_steps, "seeded_s": round(seeded_s, 1), "samples": SAMPLES,
            "queries": results, "over": over}


def table(result: dict[str, Any]) -> list[str]:
    """The result as lines of a table."""
    lines = [f"{'query':<58} {'p50 ms':>8} {'max ms':>8} {'goal':>6}  verdict",
             *(f"{q['name'][:58]:<58} {q['p50_ms']:>8.2f} {q['max_ms']:>8.2f} {q['goal_ms']:>6.0f}  {q['verdict']}"
               + (f" ({', '.join(q['seq_scans'])})" if q["seq_scans"] else "") for q in result["queries"])]
    lines.append(f"at {result['runs']:,} runs, {result['step_rows']:,} step rows "
                 f"(seeded now: {result['seeded_s']} s); {len(result['over'])} over their goal")
    return lines
