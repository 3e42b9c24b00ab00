"""``millrace bench --scenario search``: how long ``GET /api/v1/runs`` takes for each kind of
search at a history of ``runs`` runs (seeded to that size first, set-based, if the database
holds fewer of the bench's runs).

Each query goes through the API app in this process (server time: parsing, the query, the
answer; no network), 20 times after a warm-up; the figure is the median. The runs are spread
over 5 flows and 30 days with labels and inputs (``store/benchmarks.SEARCH_SEED``): a label
on one run in 20 (team), one in 1,000 (shard), an input value on 20 runs (customer).
"""
from __future__ import annotations

import datetime as dt
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import Engine

from orchestrator.store.access import Role, authenticate, create_token, revoke_token

FLOW = "bench/search"
SAMPLES = 20
DAY = dt.timedelta(days=1)


def queries(now: dt.datetime) -> dict[str, str]:
    """Each search, by name: its query string (every one asks for a page of 50)."""
    day_ago, two_days_ago = (t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (now - DAY, now - 2 * DAY))
    return {
        "newest": "",
        "flow": f"flow={FLOW}-3",
        "status": "status=failed",
        "trigger": "trigger=webhook",
        "label (1 in 20)": "label=team:t7",
        "label (1 in 1000)": "label=shard:s123",
        "two labels": "label=team:t7&label=env:prod",
        "label, no match": "label=team:nobody",
        "input value": "inputs.customer=4242",
        "input value, no match": "inputs.customer=-1",
        "time range (1 day)": f"since={two_days_ago}&until={day_ago}",
        "flow + status + label": f"flow={FLOW}-0&status=failed&label=team:t10",
        "label + time range": f"label=shard:s123&since={two_days_ago}",
    }


def measure_search(engine: Engine, *, runs: int = 1_000_000, progress: Any = lambda _: None) -> dict[str, Any]:
    """The median latency of each search at ``runs`` runs of the bench's flows, and of the
    page after the first (keyset paging) for the label search."""
    from orchestrator.cli.wiring import api_app
    from orchestrator.store.benchmarks import history_size, runs_of, seed_search

    held = runs_of(engine, FLOW + "-")
    if held < runs:
        began = time.monotonic()
        seed_search(engine, FLOW, 1, runs - held, tag=uuid.uuid4().hex,
                    progress=lambda done: progress(f"search: seeded {held + done:,} runs"))
        progress(f"search: seeded {runs - held:,} runs in {time.monotonic() - began:.0f} s")
    token = create_token(engine, f"bench-search-{uuid.uuid4().hex[:8]}", Role.VIEWER, actor="bench")
    client = api_app().test_client()
    headers = {"Authorization": f"Bearer {token}"}
    figures: dict[str, Any] = {}
    try:
        for name, query in queries(dt.datetime.now(dt.UTC)).items():
            url = "/api/v1/runs?limit=50" + (f"&{query}" if query else "")
            figures[name] = _timed(client, url, headers)
            if name == "label (1 in 20)":
                cursor = client.get(url, headers=headers).json["next_cursor"]
                figures["label (1 in 20), page 2"] = _timed(client, f"{url}&cursor={cursor}", headers)
    finally:
        found = authenticate(engine, token)
        if found is not None:
            revoke_token(engine, found.token_id, "bench")
    total, _ = history_size(engine)
    slowest = max(figures, key=lambda n: figures[n]["p50_ms"])
    progress(f"search: slowest p50 {figures[slowest]['p50_ms']} ms ({slowest}) at {total:,} runs")
    return {"runs": total, "samples": SAMPLES, "queries": figures}


def _timed(client: Any, url: str, headers: dict[str, str]) -> dict[str, Any]:
    first = client.get(url, headers=headers)  # warm: the plan cached, the pages read
    if first.status_code != 200:
        raise RuntimeError(f"{url}: {first.status_code} {first.data[:300]!r}")
    times = []
    for _ in range(SAMPLES):
        began = time.perf_counter()
        client.get(url, headers=headers)
        times.append((time.perf_counter() - began) * 1000)
    return {"query": url.split("?", 1)[1], "p50_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1), "items": len(first.json["items"])}
