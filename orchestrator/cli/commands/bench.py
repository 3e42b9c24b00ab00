"""Measuring Millrace next to raw Celery: ``bench`` and ``bench history/compare/chart/seed``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from config.settings import load_settings
from orchestrator.cli.output import note
from orchestrator.cli.wiring import engine_for, publisher_for, send

SCENARIO_NAMES = ("light40", "long10", "fanout40", "throughput")  # orchestrator.observe.bench.SCENARIOS
API = "api"  # orchestrator.observe.api_bench: the API's latency while twenty requests wait on runs
SCRAPE = "scrape"  # orchestrator.observe.api_bench: a /metrics scrape at the history the database holds
CONSOLE = "console"  # orchestrator.observe.api_bench: the console's runs pages at the history held
SEARCH = "search"  # orchestrator.observe.search_bench: GET /api/v1/runs searches at --search-runs runs
NEEDS_WORKERS = (*SCENARIO_NAMES, API)


@click.group("bench", invoke_without_command=True)
@click.option("--scenario", "scenarios", multiple=True,
              type=click.Choice(sorted((*SCENARIO_NAMES, API, SCRAPE, CONSOLE, SEARCH))),
              help="run only these (repeatable); default: all")
@click.option("--repetitions", type=int, default=None, help="default: per scenario (2 to 5)")
@click.option("--workers", type=int, default=0, metavar="N",
              help="start N workers for the bench (default: use running ones; refused if none consumes)")
@click.option("--search-runs", type=click.IntRange(1, 10_000_000), default=1_000_000, show_default=True,
              help="search: the runs to search (seeded up to this many first)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object on one line")
@click.pass_context
def bench_group(ctx: click.Context, scenarios: tuple[str, ...], repetitions: int | None, workers: int,
                search_runs: int, as_json: bool) -> int:
    """Millrace next to raw Celery on the same workers; results kept in PostgreSQL."""
    if ctx.invoked_subcommand is not None:
        return 0
    from orchestrator.definitions.inputs import validate_inputs
    from orchestrator.definitions.parser import parse_flow
    from orchestrator.execution.plan import build_plan
    from orchestrator.observe import bench
    from orchestrator.services.runs import start_saved
    from orchestrator.services.saving import save_flow

    settings = load_settings()
    engine = engine_for(settings)
    names = list(scenarios) or [*bench.SCENARIOS, API, SCRAPE, CONSOLE]  # search only when asked: it seeds
    started: list = []
    publisher = publisher_for(engine)
    saved: dict = {}

    def start_flow(text: str) -> str:
        """A run of the flow ``text``, saved the first time: then started as the API or a schedule
        starts a saved flow (its plan cached, its inputs checked, the run recorded and published)."""
        if text not in saved:
            flow = parse_flow(text)
            saved[text] = build_plan(flow, save_flow(engine, flow, text, actor="cli"))
        plan = saved[text]
        return start_saved(publisher, plan, validate_inputs(plan.flow.inputs, {}), trigger="bench", actor="cli")

    results: dict = {}
    summary: dict = {"scenarios": results}
    try:
        if any(n in NEEDS_WORKERS for n in names):
            _workers(settings, workers, started)
        for name in names:
            if name == SEARCH:
                from orchestrator.observe.search_bench import measure_search

                summary[name] = measure_search(engine, runs=search_runs, progress=note)
                continue
            if name in (API, SCRAPE, CONSOLE):
                from orchestrator.observe import api_bench

                measure = {API: api_bench.measure, SCRAPE: api_bench.measure_scrape,
                           CONSOLE: api_bench.measure_console}[name]
                summary[name] = measure(engine, progress=note)
                continue
            measured = bench.run_scenario(engine, bench.SCENARIOS[name], start_flow=start_flow, send=send,
                                          repetitions=repetitions, progress=note)
            results[name] = measured.summary()
    except KeyboardInterrupt:
        _purge(settings)
        note("interrupted: what the bench had queued is purged")
        return 130
    finally:
        from orchestrator.cli.wiring import stop_worker

        for worker in started:
            stop_worker(worker)
    bench_id = bench.store(engine, summary, {"scenarios": names, "repetitions": repetitions})
    note(f"stored as bench {bench_id} (millrace bench history / compare / chart)")
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print(summary)
    return 0


def _workers(settings, count: int, started: list) -> None:
    """Start ``count`` workers for the bench into ``started`` (stopped by the caller whatever
    happens), or check that some already consume its queue (refused when none does: the
    bench would wait for nothing)."""
    from orchestrator.cli.wiring import consumers, start_worker

    if count:
        for _ in range(count):
            started.append(start_worker(settings, [settings.default_queue], concurrency=2))
        if not settings.broker_url.startswith("filesystem"):  # the file-system broker cannot say who consumes
            _wait_for_consumers(settings, started)
        return
    if not consumers(settings):
        raise click.ClickException(f"no worker consumes the queue '{settings.default_queue}': start one "
                                   "(`millrace worker`, `millrace up`) or pass --workers N")


def _wait_for_consumers(settings, workers: list, timeout: float = 60) -> None:
    import time

    from orchestrator.cli.wiring import consumers

    deadline = time.monotonic() + timeout
    while consumers(settings) < len(workers):
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            raise click.ClickException(f"the bench's workers did not start (see {settings.home / 'worker.log'})")
        time.sleep(0.5)


def _purge(settings) -> None:
    from tasks import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(settings.default_queue)


def _print(summary: dict) -> None:
    for name, s in summary["scenarios"].items():
        click.echo(f"{name:<11} millrace {s['millrace_s'] * 1000:8.0f} ms   raw {s['raw_s'] * 1000:8.0f} ms   "
                   f"ratio {s['ratio']}")
    if API in summary:
        a = summary[API]
        click.echo(f"{'api':<11} while {a['waiting']} requests wait: /healthz p50 {a['healthz_p50_ms']} ms, "
                   f"GET p50 {a['get_p50_ms']} ms")
    if CONSOLE in summary:
        c = summary[CONSOLE]
        click.echo(f"{'console':<11} runs page p50 {c['pages']['/']['p50_ms']} ms at {c['runs']:,} runs")
    if SEARCH in summary:
        for name, q in summary[SEARCH]["queries"].items():
            click.echo(f"{'search':<11} {name:<26} p50 {q['p50_ms']:7.1f} ms  max {q['max_ms']:7.1f} ms  "
                       f"({q['items']} items)")
        click.echo(f"{'search':<11} at {summary[SEARCH]['runs']:,} runs")
    if SCRAPE in summary:
        s = summary[SCRAPE]
        click.echo(f"{'scrape':<11} /metrics p50 {s['scrape_p50_ms']} ms at {s['runs']:,} runs")


@bench_group.command("history")
@click.option("--limit", type=int, default=20, show_default=True)
def bench_history(limit: int) -> None:
    """Stored results, newest first."""
    from orchestrator.store import benchmarks

    for row in benchmarks.history(engine_for(load_settings()), limit):
        figures = ", ".join(f"{name} {s['millrace_s'] * 1000:.0f} ms (x{s['ratio']})"
                            for name, s in row["summary"]["scenarios"].items())
        click.echo(f"{row['id']:>5}  {row['created_at']:%Y-%m-%d %H:%M}  {row['git_revision'] or '-':<9} "
                   f"{row['machine'].get('cpus')} cpu  {figures}")


@bench_group.command("compare")
@click.argument("a", type=int)
@click.argument("b", type=int)
def bench_compare(a: int, b: int) -> None:
    """Two stored results, scenario by scenario."""
    from orchestrator.observe import bench
    from orchestrator.store import benchmarks

    engine = engine_for(load_settings())
    click.echo("\n".join(bench.compare(benchmarks.get(engine, a), benchmarks.get(engine, b))))


@bench_group.command("chart")
@click.argument("bench_id", type=int, required=False)
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def bench_chart(bench_id: int | None, out: Path) -> None:
    """A stored result (default: the newest) as an SVG chart."""
    from orchestrator.observe.charts import render_chart
    from orchestrator.store import benchmarks

    engine = engine_for(load_settings())
    if bench_id is None:
        newest = benchmarks.history(engine, 1)
        if not newest:
            raise click.ClickException("no bench result stored yet: run `millrace bench`")
        bench_id = newest[0]["id"]
    out.write_text(render_chart(benchmarks.get(engine, bench_id)))
    note(f"wrote {out} (bench {bench_id})")


@bench_group.command("seed")
@click.argument("runs", type=click.IntRange(1, 10_000_000))
@click.option("--steps", type=click.IntRange(1, 100), default=10, show_default=True, help="steps per run")
def bench_seed(runs: int, steps: int) -> None:
    """Write a history of RUNS finished runs (a tenth failed) with their steps and audit
    events, set-based (generate_series), to measure against."""
    import time
    import uuid

    from orchestrator.definitions.parser import parse_flow
    from orchestrator.observe.scale_bench import FLOW, seed_flow_text
    from orchestrator.services.saving import save_flow
    from orchestrator.store import benchmarks

    engine = engine_for(load_settings())
    text = seed_flow_text(steps)
    version = save_flow(engine, parse_flow(text), text, actor="bench")
    began = time.monotonic()
    benchmarks.seed_history(engine, FLOW, version, runs, steps, tag=uuid.uuid4().hex,
                            progress=lambda done: print(f"{done:,} runs", file=sys.stderr))
    note(f"seeded {runs:,} runs with {steps} steps each in {time.monotonic() - began:.1f} s")


@bench_group.command("scale")
@click.option("--runs", type=click.IntRange(1, 10_000_000), default=1_000_000, show_default=True,
              help="the history to measure at (seeded up to this many runs first)")
@click.option("--steps", type=click.IntRange(1, 100), default=10, show_default=True, help="steps per seeded run")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object on one line")
def bench_scale(runs: int, steps: int, as_json: bool) -> None:
    """Time every periodic query (sweeper, scheduler, metrics) and every list route at a
    history of RUNS runs, and name any that reads a history table sequentially; goals:
    10 ms a periodic query, 50 ms a route."""
    from orchestrator.observe import bench
    from orchestrator.observe.scale_bench import measure_scale, table

    engine = engine_for(load_settings())
    result = measure_scale(engine, runs=runs, steps=steps, progress=note)
    bench_id = bench.store(engine, {"scenarios": {}, "scale": result}, {"scale_runs": runs, "steps": steps})
    note(f"stored as bench {bench_id}")
    click.echo(json.dumps(result) if as_json else "\n".join(table(result)))


@bench_group.command("audit")
@click.option("--clients", type=click.IntRange(1, 256), default=16, show_default=True, help="connections writing")
@click.option("--seconds", type=click.FloatRange(0.5, 600), default=10.0, show_default=True)
@click.option("--one-chain", is_flag=True, help="all clients write one run's events (as one lock made them)")
def bench_audit(clients: int, seconds: float, one_chain: bool) -> None:
    """Audit events per second, inserted directly by CLIENTS connections, each for a run of
    its own (the events stay in the trail: the audit trail is append-only)."""
    from orchestrator.observe.audit_bench import measure_audit_inserts

    engine = engine_for(load_settings())
    rate = measure_audit_inserts(engine, clients, seconds, one_chain)
    click.echo(f"{rate:,.0f} audit events/s at {clients} clients ({'one chain' if one_chain else 'a chain each'})")


@bench_group.command("broker")
@click.option("--publishers", type=click.IntRange(1, 64), default=1, show_default=True, help="connections publishing")
@click.option("--messages", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="messages each publisher sends")
def bench_broker(publishers: int, messages: int) -> None:
    """The broker alone: persistent publishes with confirms per second by PUBLISHERS at once,
    then deliveries with their acks at prefetch 1, on a queue of MILLRACE_QUEUE_TYPE."""
    from orchestrator.observe.broker_bench import measure_broker

    settings = load_settings()
    if not settings.broker_url.startswith("amqp"):
        raise click.ClickException("bench broker measures RabbitMQ: set MILLRACE_BROKER_URL to an amqp:// URL")
    r = measure_broker(settings.broker_url, settings.queue_prefix, settings.queue_type, publishers, messages)
    click.echo(f"{r['queue_type']}, {publishers} publishers: {r['publishes_per_s']:,.0f} publishes/s "
               f"({r['publish_ms']:.2f} ms each per publisher); one consumer at prefetch 1: "
               f"{r['deliveries_per_s']:,.0f} deliveries/s ({r['deliver_ms']:.2f} ms each)")


COMMANDS = (bench_group,)
