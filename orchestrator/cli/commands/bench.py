"""Measuring Millrace next to raw Celery: ``bench`` and ``bench history/compare/chart``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from config.settings import load_settings
from orchestrator.cli.wiring import engine_for, publisher_for, send

SCENARIO_NAMES = ("light40", "long10", "fanout40", "throughput")  # orchestrator.observe.bench.SCENARIOS
API = "api"  # orchestrator.observe.api_bench: the API's latency while twenty requests wait on runs
SCRAPE = "scrape"  # orchestrator.observe.api_bench: a /metrics scrape at the history the database holds


def add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="Millrace next to raw Celery on the same workers; kept in Postgres")
    bench.add_argument("--scenario", action="append", choices=sorted((*SCENARIO_NAMES, API, SCRAPE)),
                       help="run only these (repeatable); default: all")
    bench.add_argument("--repetitions", type=int, default=None, help="default: per scenario (2 to 5)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(handler=cmd_bench)
    bench_sub = bench.add_subparsers()
    bench_history = bench_sub.add_parser("history", help="stored results, newest first")
    bench_history.add_argument("--limit", type=int, default=20)
    bench_history.set_defaults(handler=cmd_bench_history)
    bench_compare = bench_sub.add_parser("compare", help="two stored results, scenario by scenario")
    bench_compare.add_argument("a", type=int)
    bench_compare.add_argument("b", type=int)
    bench_compare.set_defaults(handler=cmd_bench_compare)
    bench_chart = bench_sub.add_parser("chart", help="a stored result as an SVG chart")
    bench_chart.add_argument("id", type=int, nargs="?", help="default: the newest")
    bench_chart.add_argument("-o", "--output", required=True)
    bench_chart.set_defaults(handler=cmd_bench_chart)
    bench_seed = bench_sub.add_parser("seed", help="write a history of N finished runs to measure against")
    bench_seed.add_argument("runs", type=int)
    bench_seed.add_argument("--steps", type=int, default=10, help="steps per run (default 10)")
    bench_seed.set_defaults(handler=cmd_bench_seed)


def cmd_bench(args: argparse.Namespace) -> int:
    from orchestrator.definitions.parser import parse_flow
    from orchestrator.observe import bench
    from orchestrator.services.runs import submit

    engine = engine_for(load_settings())

    def start_flow(text: str) -> str:
        return submit(publisher_for(engine), parse_flow(text), text, {}, trigger="bench")

    names = args.scenario or [*bench.SCENARIOS, API, SCRAPE]
    results = {}
    summary: dict = {"scenarios": results}
    for name in names:
        if name in (API, SCRAPE):
            from orchestrator.observe import api_bench

            measure = api_bench.measure if name == API else api_bench.measure_scrape
            summary[name] = measure(engine, progress=lambda line: print(line, file=sys.stderr))
            continue
        measured = bench.run_scenario(engine, bench.SCENARIOS[name], start_flow=start_flow, send=send,
                                      repetitions=args.repetitions,
                                      progress=lambda line: print(line, file=sys.stderr))
        results[name] = measured.summary()
    bench_id = bench.store(engine, summary, {"scenarios": names, "repetitions": args.repetitions})
    print(f"stored as bench {bench_id} (millrace bench history / compare / chart)", file=sys.stderr)
    print(json.dumps(summary, indent=None if args.json else 2))
    return 0


def cmd_bench_history(args: argparse.Namespace) -> int:
    from orchestrator.store import benchmarks

    for row in benchmarks.history(engine_for(load_settings()), args.limit):
        figures = ", ".join(f"{name} {s['millrace_s'] * 1000:.0f} ms (x{s['ratio']})"
                            for name, s in row["summary"]["scenarios"].items())
        print(f"{row['id']:>5}  {row['created_at']:%Y-%m-%d %H:%M}  {row['git_revision'] or '-':<9} "
              f"{row['machine'].get('cpus')} cpu  {figures}")
    return 0


def cmd_bench_compare(args: argparse.Namespace) -> int:
    from orchestrator.observe import bench
    from orchestrator.store import benchmarks

    engine = engine_for(load_settings())
    print("\n".join(bench.compare(benchmarks.get(engine, args.a), benchmarks.get(engine, args.b))))
    return 0


def cmd_bench_chart(args: argparse.Namespace) -> int:
    from orchestrator.observe.charts import render_chart
    from orchestrator.store import benchmarks

    engine = engine_for(load_settings())
    if args.id is None:
        newest = benchmarks.history(engine, 1)
        if not newest:
            raise SystemExit("no bench result stored yet: run `millrace bench`")
        args.id = newest[0]["id"]
    Path(args.output).write_text(render_chart(benchmarks.get(engine, args.id)))
    print(f"wrote {args.output} (bench {args.id})", file=sys.stderr)
    return 0


def cmd_bench_seed(args: argparse.Namespace) -> int:
    """N finished runs (a tenth failed) of ``bench/seed`` with their steps and audit events,
    written set-based (generate_series), for benchmarks at a history's size."""
    import time
    import uuid

    from orchestrator.definitions.parser import parse_flow
    from orchestrator.services.saving import save_flow
    from orchestrator.store import benchmarks

    if not 1 <= args.runs <= 10_000_000 or not 1 <= args.steps <= 100:
        raise SystemExit("runs must be 1 to 10,000,000 and --steps 1 to 100")
    engine = engine_for(load_settings())
    steps = "\n".join(f"  - {{id: s{k}, python: \"def main():\\n    return {k}\"}}" for k in range(args.steps))
    text = f"id: bench/seed\nsteps:\n{steps}\n"
    version = save_flow(engine, parse_flow(text), text, actor="bench")
    began = time.monotonic()
    benchmarks.seed_history(engine, "bench/seed", version, args.runs, args.steps, tag=uuid.uuid4().hex,
                            progress=lambda done: print(f"{done:,} runs", file=sys.stderr))
    took = time.monotonic() - began
    print(f"seeded {args.runs:,} runs with {args.steps} steps each in {took:.1f} s", file=sys.stderr)
    return 0
