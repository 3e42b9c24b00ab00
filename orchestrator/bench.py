"""``millrace bench``: a flow through the real path next to the same work as a raw Celery chain.

The raw baseline runs plain tasks (``millrace.bench.raw``) on the same broker and the same
worker pool, so Millrace/raw is the price of orchestration: recording, isolation, context.
"""
from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from orchestrator import records
from orchestrator.models import BenchMark

FIBO_N = 10


def light40_flow(steps: int = 40, n: int = FIBO_N) -> str:
    """``steps`` sequential Python steps, each computing fibo(n) and passing x + 1 on."""
    code = (
        "def fibo(n):\\n    return n if n < 2 else fibo(n - 1) + fibo(n - 2)\\n"
        f"def main(x: int) -> int:\\n    fibo({n})\\n    return x + 1"
    )
    lines = [f"id: bench/light{steps}", "steps:"]
    for i in range(steps):
        lines.append(f"  - id: s{i}")
        lines.append(f'    python: "{code}"')
        previous = "0" if i == 0 else f'"${{{{ steps.s{i - 1}.result }}}}"'
        lines.append(f"    with: {{x: {previous}}}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Sample:
    seconds: float
    assignment: float = 0.0  # created -> started, summed over steps
    execution: float = 0.0  # started -> finished
    transition: float = 0.0  # previous finished -> created


@dataclass
class Comparison:
    scenario: str
    steps: int
    millrace: list[Sample]
    raw: list[float]

    def summary(self) -> dict[str, Any]:
        m = statistics.median(s.seconds for s in self.millrace)
        r = statistics.median(self.raw)
        return {
            "steps": self.steps,
            "repetitions": len(self.raw),
            "millrace_s": round(m, 4),
            "raw_s": round(r, 4),
            "ratio": round(m / r, 2),
            "millrace_min_s": round(min(s.seconds for s in self.millrace), 4),
            "millrace_max_s": round(max(s.seconds for s in self.millrace), 4),
            "raw_min_s": round(min(self.raw), 4),
            "raw_max_s": round(max(self.raw), 4),
            "overhead_per_step_ms": round((m - r) / self.steps * 1000, 2),
            "millrace_per_step_ms": round(m / self.steps * 1000, 2),
            "raw_per_step_ms": round(r / self.steps * 1000, 2),
            "breakdown_ms_per_step": {
                "assignment": round(statistics.median(s.assignment for s in self.millrace) / self.steps * 1000, 2),
                "execution": round(statistics.median(s.execution for s in self.millrace) / self.steps * 1000, 2),
                "transition": round(statistics.median(s.transition for s in self.millrace) / self.steps * 1000, 2),
            },
        }


def compare_chain(engine: Engine, *, start_flow: Callable[[str], str],
                  start_raw: Callable[[int, int, str], None], steps: int = 40,
                  repetitions: int = 5, progress: Callable[[str], None] = lambda _: None,
                  timeout: float = 300) -> Comparison:
    """Run the sequential scenario ``repetitions`` times each way, after one warm-up of each."""
    text = light40_flow(steps)
    result = Comparison(f"light{steps}", steps, [], [])
    for rep in range(repetitions + 1):
        run_id = start_flow(text)
        _wait_run(engine, run_id, timeout)
        sample = _sample(engine, run_id)
        key = uuid.uuid4().hex
        started = records.now()
        start_raw(steps, FIBO_N, key)
        raw = (_wait_mark(engine, key, timeout) - started).total_seconds()
        if rep:  # the first round warms workers, plans and fork servers
            result.millrace.append(sample)
            result.raw.append(raw)
        progress(f"{result.scenario} {'warm-up' if not rep else f'{rep}/{repetitions}'}: "
                 f"millrace {sample.seconds * 1000:.0f} ms, raw {raw * 1000:.0f} ms")
    return result


def _wait_run(engine: Engine, run_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not records.run_status(engine, run_id).finished:
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench run {run_id} did not finish in {timeout}s")
        time.sleep(0.005)
    if records.run_status(engine, run_id).value != "succeeded":
        raise RuntimeError(f"bench run {run_id} failed: {records.get_run(engine, run_id)['error']}")


def _wait_mark(engine: Engine, key: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    query = select(BenchMark.finished_at).where(BenchMark.key == key)
    while True:
        with engine.connect() as conn:
            finished = conn.execute(query).scalar()
        if finished is not None:
            return finished
        if time.monotonic() > deadline:
            raise TimeoutError(f"raw chain {key} did not finish in {timeout}s")
        time.sleep(0.005)


def _sample(engine: Engine, run_id: str) -> Sample:
    run = records.get_run(engine, run_id)
    steps = sorted(run["steps"], key=lambda s: s["started_at"])
    assignment = sum((s["started_at"] - s["created_at"]).total_seconds() for s in steps)
    execution = sum((s["finished_at"] - s["started_at"]).total_seconds() for s in steps)
    pairs = zip(steps, steps[1:], strict=False)
    transition = sum((b["created_at"] - a["finished_at"]).total_seconds() for a, b in pairs)
    return Sample((run["finished_at"] - run["created_at"]).total_seconds(), assignment, execution, transition)
