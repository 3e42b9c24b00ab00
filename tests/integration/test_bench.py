"""`millrace bench` end to end on the test workers: scenarios through the real path next to
raw Celery, stored in Postgres, listed, compared and drawn."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from orchestrator.cli.main import main

pytestmark = pytest.mark.integration


def test_bench_measures_stores_compares_and_draws(engine, worker, capsys, tmp_path) -> None:
    for _ in range(2):
        assert main(["bench", "--scenario", "light40", "--scenario", "fanout40", "--repetitions", "1",
                     "--json"]) == 0
    captured = capsys.readouterr()
    first, second = (json.loads(line) for line in captured.out.strip().splitlines())
    assert "light40 1/1: millrace" in captured.err  # progress while it runs
    light = second["scenarios"]["light40"]
    assert light["steps"] == 40 and light["millrace_s"] > 0 and light["raw_s"] > 0  # figures, not a race
    assert light["ratio"] == pytest.approx(light["millrace_s"] / light["raw_s"], rel=0.02)
    assert set(light["breakdown_ms_per_step"]) == {"assignment", "execution", "transition"}
    assert abs(sum(light["breakdown_percent"].values()) - 100) < 0.5
    fan = second["scenarios"]["fanout40"]
    assert fan["millrace_s"] > 0 and fan["raw_s"] > 0
    assert main(["bench", "history", "--limit", "2"]) == 0
    listed = capsys.readouterr().out.strip().splitlines()
    assert len(listed) == 2 and "light40" in listed[0]
    newest, older = (int(line.split()[0]) for line in listed)
    assert main(["bench", "compare", str(older), str(newest)]) == 0
    assert "light40: millrace" in capsys.readouterr().out
    chart = tmp_path / "bench.svg"
    assert main(["bench", "chart", "-o", str(chart)]) == 0
    root = ET.fromstring(chart.read_text())
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "light40" in texts and "fanout40" in texts and any(t.startswith("raw ") for t in texts)
    assert first["scenarios"].keys() == second["scenarios"].keys()


def test_seed_writes_a_history_of_finished_runs_with_steps_and_audit_events(engine) -> None:
    from sqlalchemy import func, select

    from orchestrator.cli.main import main
    from orchestrator.store import tables
    from orchestrator.store.verification import verify

    assert main(["bench", "seed", "2000", "--steps", "3"]) == 0
    with engine.connect() as conn:
        statuses = dict(conn.execute(select(tables.runs.c.status, func.count()).where(
            tables.runs.c.flow_id == "bench/seed").group_by(tables.runs.c.status)).all())
        steps = conn.execute(select(func.count()).select_from(tables.step_runs).join(
            tables.runs, tables.runs.c.id == tables.step_runs.c.run_id).where(
            tables.runs.c.flow_id == "bench/seed")).scalar()
    assert statuses == {"succeeded": 1800, "failed": 200}
    assert steps == 2000 * 3  # every run has all its step rows (a failed one failed at its last)
    assert verify(engine).ok  # the seeded events are chained like any others


def test_bench_times_the_api_while_twenty_requests_wait_on_runs(engine, worker, capsys) -> None:
    assert main(["bench", "--scenario", "api", "--json"]) == 0
    captured = capsys.readouterr()
    api = json.loads(captured.out.strip().splitlines()[-1])["api"]
    assert api["waiting"] == 20 and api["still_waiting_while_timed"] == 20  # timed while all twenty held
    assert api["healthz_p50_ms"] > 0 and api["get_p50_ms"] > 0  # figures, not a race
    assert api["waits_ended"] == ["cancelled"]  # the bench ends the runs it held
    assert "api: /healthz p50" in captured.err


def test_bench_times_a_metrics_scrape_at_the_history_held(engine, worker, capsys) -> None:
    assert main(["bench", "--scenario", "scrape", "--json"]) == 0
    captured = capsys.readouterr()
    scrape = json.loads(captured.out.strip().splitlines()[-1])["scrape"]
    assert scrape["runs"] > 0 and scrape["step_rows"] > 0 and scrape["scrapes"] == 20
    assert 0 < scrape["scrape_p50_ms"] <= scrape["scrape_max_ms"]
    assert "scrape: p50" in captured.err


def test_bench_times_the_consoles_pages_at_the_history_held(engine, capsys) -> None:
    assert main(["bench", "--scenario", "console", "--json"]) == 0
    console = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["console"]
    assert set(console["pages"]) == {"/", "/?status=failed", "/?flow=bench/seed", "/flows"}
    assert all(0 < page["p50_ms"] <= page["max_ms"] for page in console["pages"].values())


def test_bench_seeds_runs_to_search_and_times_each_search(engine, capsys) -> None:
    assert main(["bench", "--scenario", "search", "--search-runs", "2000", "--json"]) == 0
    search = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["search"]
    assert search["runs"] >= 2000
    queries = search["queries"]
    assert {"newest", "label (1 in 20)", "label (1 in 20), page 2", "input value", "time range (1 day)"} <= set(queries)
    assert all(0 < q["p50_ms"] <= q["max_ms"] for q in queries.values())
    assert queries["label (1 in 20)"]["items"] == 50 and queries["label, no match"]["items"] == 0
    assert queries["input value"]["items"] == 0  # 2,000 runs: customers 0-1999 only (4242 has none)
    # a second bench seeds nothing more: the runs are there
    assert main(["bench", "--scenario", "search", "--search-runs", "2000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["search"]["runs"] == search["runs"]


def test_bench_broker_publishes_delivers_every_message_and_leaves_no_queue(capsys) -> None:
    import re

    import amqp
    from kombu import Connection

    from config.settings import load_settings
    from orchestrator.observe.broker_bench import measure_broker

    settings = load_settings()
    measured = measure_broker(settings.broker_url, settings.queue_prefix, settings.queue_type, 3, 40)
    assert measured["messages"] == 120 and measured["queue_type"] == settings.queue_type
    assert measured["publishes_per_s"] > 0 and measured["deliveries_per_s"] > 0

    assert main(["bench", "broker", "--publishers", "2", "--messages", "30"]) == 0
    printed = capsys.readouterr().out
    assert re.search(rf"^{settings.queue_type}, 2 publishers: [\d,]+ publishes/s .* [\d,]+ deliveries/s", printed, re.M)
    assert measured["queue"].startswith(f"{settings.queue_prefix}bench_broker_")
    with Connection(settings.broker_url) as conn:  # the bench's queue is gone
        with pytest.raises(amqp.exceptions.NotFound):
            conn.channel().queue_declare(measured["queue"], passive=True)
