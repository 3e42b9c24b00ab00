"""Plain Celery tasks for the raw baseline of ``millrace bench``: the same work, no orchestration."""
from __future__ import annotations

from orchestrator.store import benchmarks
from tasks.app import app, settings
from tasks.runtime import runtime


def fibo(n: int) -> int:
    return n if n < 2 else fibo(n - 1) + fibo(n - 2)


@app.task(name="millrace.bench.raw")
def raw(previous: int, n: int) -> int:
    fibo(n)
    return previous + 1


@app.task(name="millrace.bench.sum")
def total(results: list[int], key: str) -> None:
    """The fan-out baseline's chord body: add up, then mark done."""
    sum(results)
    done(0, key)


@app.task(name="millrace.bench.done")
def done(result: int, key: str) -> None:
    benchmarks.mark_done(runtime(settings).engine, key)
