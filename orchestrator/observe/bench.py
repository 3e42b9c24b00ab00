"""``millrace bench``: flows through the real path next to the same work as raw Celery.

Each scenario runs a real flow (submitted, published to RabbitMQ, run by the workers,
recorded in Postgres) and, in the same invocation, the same work as plain Celery tasks
(``millrace.bench.*``) on the same broker and worker pool, so Millrace/raw is the price of
orchestration: recording, isolation in a process per step, passing the context on.

Breakdown per step, as Windmill's benchmark defines it, from the recorded timestamps:
assignment (created -> started: waiting for a worker), execution (started -> finished),
transition (the previous step finished -> this one created).
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Signature, chain, chord, group
from sqlalchemy import Engine

from orchestrator.store import benchmarks, runs, sql, views

FIBO = "def fibo(n):\\n    return n if n < 2 else fibo(n - 1) + fibo(n - 2)\\n"
Send = Callable[[Signature], Any]
StartFlow = Callable[[str], str]


def chain_flow(name: str, steps: int, n: int) -> str:
    """``steps`` sequential Python steps, each computing fibo(n) and passing x + 1 on."""
    code = FIBO + f"def main(x: int) -> int:\\n    fibo({n})\\n    return x + 1"
    lines = [f"id: bench/{name}", "steps:"]
    for i in range(steps):
        previous = "0" if i == 0 else f'"${{{{ steps.s{i - 1}.result }}}}"'
        lines += [f"  - id: s{i}", f'    python: "{code}"', f"    with: {{x: {previous}}}"]
    return "\n".join(lines) + "\n"


def fanout_flow(items: int, n: int) -> str:
    """fibo(n) for each of ``items`` items in parallel, then their sum."""
    code = FIBO + f"def main(x: int) -> int:\\n    fibo({n})\\n    return x"
    add = "def main(values: list) -> int:\\n    return sum(values)"
    return (f"id: bench/fanout{items}\nsteps:\n  - id: each\n    for_each: ${{{{ range({items}) | list }}}}\n"
            f"    parallel: true\n    do:\n      - id: work\n        python: \"{code}\"\n"
            f"        with: {{x: \"${{{{ item }}}}\"}}\n"
            f"  - id: total\n    python: \"{add}\"\n    with: {{values: \"${{{{ steps.each.result }}}}\"}}\n")


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: int  # steps (tasks) per run, for the per-step figures
    fibo_n: int
    repetitions: int
    kind: str  # chain | fanout | throughput

    def flow(self) -> str:
        if self.kind == "fanout":
            return fanout_flow(self.steps - 1, self.fibo_n)
        return chain_flow(self.name, 1 if self.kind == "throughput" else self.steps, self.fibo_n)

    def raw(self, key: str) -> Signature:
        """The same work as plain Celery tasks; the last one records ``key`` as done."""
        work = [Signature("millrace.bench.raw", args=(0,), kwargs={"n": self.fibo_n})]
        if self.kind == "fanout":
            parts = [Signature("millrace.bench.raw", args=(i,), kwargs={"n": self.fibo_n})
                     for i in range(self.steps - 1)]
            return chord(group(parts), Signature("millrace.bench.sum", kwargs={"key": key}))
        work += [Signature("millrace.bench.raw", kwargs={"n": self.fibo_n}) for _ in range(self.steps - 1)]
        return chain(*work, Signature("millrace.bench.done", kwargs={"key": key}))


SCENARIOS = {
    "light40": Scenario("light40", 40, 10, 5, "chain"),
    "long10": Scenario("long10", 10, 33, 2, "chain"),
    "fanout40": Scenario("fanout40", 41, 10, 5, "fanout"),
    "throughput": Scenario("throughput", 1, 10, 3, "throughput"),
}
THROUGHPUT_RUNS = 100


@dataclass(frozen=True)
class Sample:
    seconds: float
    assignment: float = 0.0  # summed over steps
    execution: float = 0.0
    transition: float = 0.0
    latencies: tuple[float, ...] = ()  # throughput: each run's created -> finished


@dataclass
class Measured:
    scenario: Scenario
    millrace: list[Sample] = field(default_factory=list)
    raw: list[Sample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        s = self.scenario
        m = statistics.median(x.seconds for x in self.millrace)
        r = statistics.median(x.seconds for x in self.raw)
        out: dict[str, Any] = {
            "steps": s.steps, "repetitions": len(self.raw),
            "millrace_s": round(m, 4), "raw_s": round(r, 4), "ratio": round(m / r, 2),
            "millrace_min_s": round(min(x.seconds for x in self.millrace), 4),
            "millrace_max_s": round(max(x.seconds for x in self.millrace), 4),
            "raw_min_s": round(min(x.seconds for x in self.raw), 4),
            "raw_max_s": round(max(x.seconds for x in self.raw), 4),
        }
        if s.kind == "throughput":
            for who, samples in (("millrace", self.millrace), ("raw", self.raw)):
                latencies = sorted(v for x in samples for v in x.latencies)
                out[f"{who}_runs_per_s"] = round(THROUGHPUT_RUNS / statistics.median(x.seconds for x in samples), 1)
                out[f"{who}_p50_ms"] = round(_percentile(latencies, 0.50) * 1000, 1)
                out[f"{who}_p95_ms"] = round(_percentile(latencies, 0.95) * 1000, 1)
            out["runs"] = THROUGHPUT_RUNS
            return out
        per = {k: statistics.median(getattr(x, k) for x in self.millrace) / s.steps * 1000
               for k in ("assignment", "execution", "transition")}
        total = sum(per.values()) or 1.0
        out.update({
            # steps one after another: the breakdown adds up to the run's time (fan-out: it does not)
            "sequential": s.kind == "chain",
            "millrace_per_step_ms": round(m / s.steps * 1000, 2),
            "raw_per_step_ms": round(r / s.steps * 1000, 2),
            "overhead_per_step_ms": round((m - r) / s.steps * 1000, 2),
            # what the run took beyond executing its steps, per step
            "orchestration_per_step_ms": round(
                statistics.median(x.seconds - x.execution for x in self.millrace) / s.steps * 1000, 2),
            "breakdown_ms_per_step": {k: round(v, 2) for k, v in per.items()},
            "breakdown_percent": {k: round(v / total * 100, 1) for k, v in per.items()},
        })
        return out


def run_scenario(engine: Engine, scenario: Scenario, *, start_flow: StartFlow, send: Send,
                 repetitions: int | None = None, progress: Callable[[str], None] = lambda _: None,
                 timeout: float = 600) -> Measured:
    """One warm-up round of each, then ``repetitions`` rounds, Millrace and raw alternating."""
    reps = repetitions or scenario.repetitions
    measured = Measured(scenario)
    text = scenario.flow()
    for rep in range(reps + 1):
        if scenario.kind == "throughput":
            mine = _throughput_millrace(engine, start_flow, text, timeout)
            raw = _throughput_raw(engine, scenario, send, timeout)
        else:
            run_id = start_flow(text)
            _wait_run(engine, run_id, timeout)
            mine = _sample(engine, run_id, sequential=scenario.kind == "chain")
            key = uuid.uuid4().hex
            sent = sql.now()
            send(scenario.raw(key))
            raw = Sample((_wait_marks(engine, [key], timeout)[key] - sent).total_seconds())
        if rep:  # the first round warms workers, plans and fork servers
            measured.millrace.append(mine)
            measured.raw.append(raw)
        progress(f"{scenario.name} {'warm-up' if not rep else f'{rep}/{reps}'}: "
                 f"millrace {mine.seconds * 1000:.0f} ms, raw {raw.seconds * 1000:.0f} ms")
    return measured


def _throughput_millrace(engine: Engine, start_flow: StartFlow, text: str, timeout: float) -> Sample:
    begun = sql.now()
    run_ids = [start_flow(text) for _ in range(THROUGHPUT_RUNS)]
    for run_id in run_ids:
        _wait_run(engine, run_id, timeout)
    runs = [views.get_run(engine, run_id, with_steps=False) for run_id in run_ids]
    ended = max(r.finished_at for r in runs)
    return Sample((ended - begun).total_seconds(),
                  latencies=tuple((r.finished_at - r.created_at).total_seconds() for r in runs))


def _throughput_raw(engine: Engine, scenario: Scenario, send: Send, timeout: float) -> Sample:
    keys = [uuid.uuid4().hex for _ in range(THROUGHPUT_RUNS)]
    begun = sql.now()
    sent = {}
    for key in keys:
        sent[key] = sql.now()
        send(scenario.raw(key))
    marks = _wait_marks(engine, keys, timeout)
    return Sample((max(marks.values()) - begun).total_seconds(),
                  latencies=tuple((marks[k] - sent[k]).total_seconds() for k in keys))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(int(q * len(values)), len(values) - 1)]


def _wait_run(engine: Engine, run_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not runs.run_status(engine, run_id).finished:
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench run {run_id} did not finish in {timeout}s")
        time.sleep(0.005)
    if runs.run_status(engine, run_id).value != "succeeded":
        raise RuntimeError(f"bench run {run_id} failed: {views.get_run(engine, run_id, with_steps=False).error}")


def _wait_marks(engine: Engine, keys: list[str], timeout: float) -> dict[str, dt.datetime]:
    deadline = time.monotonic() + timeout
    while True:
        found = benchmarks.marks(engine, keys)
        if len(found) == len(keys):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(keys) - len(found)} raw baseline(s) did not finish in {timeout}s")
        time.sleep(0.005)


def _sample(engine: Engine, run_id: str, *, sequential: bool) -> Sample:
    run = views.get_run(engine, run_id)
    steps = sorted((s for s in run.steps if s.kind == "python"), key=lambda s: s.started_at)
    assignment = sum((s.started_at - s.created_at).total_seconds() for s in steps)
    execution = sum((s.finished_at - s.started_at).total_seconds() for s in steps)
    transition = 0.0
    if sequential:
        transition = sum((b.created_at - a.finished_at).total_seconds()
                         for a, b in zip(steps, steps[1:], strict=False))
    return Sample((run.finished_at - run.created_at).total_seconds(), assignment, execution, transition)


# --- kept in Postgres -------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    memory = 0
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {"host": platform.node(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "system": platform.platform(), "python": platform.python_version(),
            "memory_gib": round(memory / 2**30, 1)}


def git_revision() -> str | None:
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent, timeout=5)
    except OSError:
        return None
    return found.stdout.strip() or None


def store(engine: Engine, summary: dict[str, Any], args: dict[str, Any]) -> int:
    """Keep a bench result with the machine and revision it ran on; returns its id."""
    return benchmarks.keep(engine, summary, args, machine(), git_revision())


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Lines comparing two stored results, scenario by scenario."""
    lines = [f"bench {a['id']} ({a['git_revision']}, {a['created_at']:%Y-%m-%d %H:%M}) -> "
             f"bench {b['id']} ({b['git_revision']}, {b['created_at']:%Y-%m-%d %H:%M})"]
    for name in sorted(set(a["summary"]["scenarios"]) | set(b["summary"]["scenarios"])):
        sa, sb = a["summary"]["scenarios"].get(name), b["summary"]["scenarios"].get(name)
        if sa is None or sb is None:
            lines.append(f"  {name}: only in bench {a['id'] if sa else b['id']}")
            continue
        change = (sb["millrace_s"] - sa["millrace_s"]) / sa["millrace_s"] * 100
        lines.append(f"  {name}: millrace {sa['millrace_s'] * 1000:.0f} -> {sb['millrace_s'] * 1000:.0f} ms "
                     f"({change:+.1f}%), ratio {sa['ratio']} -> {sb['ratio']}")
    if "api" in a["summary"] and "api" in b["summary"]:
        sa, sb = a["summary"]["api"], b["summary"]["api"]
        lines.append(f"  api while {sb['waiting']} wait: /healthz p50 {sa['healthz_p50_ms']} -> {sb['healthz_p50_ms']} "
                     f"ms, GET p50 {sa['get_p50_ms']} -> {sb['get_p50_ms']} ms")
    return lines
