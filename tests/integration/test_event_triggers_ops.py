"""What an operator sees of event triggers: readiness degrades while no listener consumes
them, metrics count their connections and messages, and the API lists every fire."""
from __future__ import annotations

import json

import kombu
import pytest
from sqlalchemy import delete

from tests.conftest import AMQP
from tests.integration.event_triggers import ListenerProcess, doubling_flow, unique, wait_fires, wait_state

pytestmark = pytest.mark.integration


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_readiness_metrics_and_fires_follow_the_listener(engine, api, amqp_queue):
    queue = amqp_queue
    from orchestrator.store.tables import event_triggers

    with engine.begin() as conn:  # triggers other tests left behind would count in readiness
        conn.execute(delete(event_triggers))
    flow_id = unique("ops_orders")
    api.save_flow(doubling_flow(flow_id, f"    amqp: {{queue: {queue}}}"))
    listed = api.get(f"/api/v1/event-triggers?flow={flow_id}").json["items"]
    assert [(t["trigger"], t["kind"], t["state"], t["source"]) for t in listed] == [
        ("events", "amqp", "pending", {"queue": queue, "routing_key": "#"})]
    trigger = listed[0]

    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "degraded", ready.json
    assert ready.json["checks"]["listener"].startswith("no `millrace listener` leads")
    assert ready.json["checks"]["event_triggers"].startswith("1 of 1 not connected")
    assert flow_id not in json.dumps(ready.json)  # anyone may ask: no flow named
    assert _metric(api.get("/metrics").text, "millrace_event_trigger_connected", flow=flow_id) == 0.0

    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        with kombu.Connection(AMQP) as conn:
            for body, key in ((json.dumps({"n": 4}), "good"), ("not json", "bad"), (json.dumps({"n": 5}), "good2")):
                conn.Producer().publish(body, routing_key=queue, exchange="", message_id=key, serializer=None)
        wait_fires(engine, flow_id, "events", 3, listener)
        ready = api.client.get("/readyz")
        metrics = api.get("/metrics").text
    finally:
        listener.stop()
    assert ready.status_code == 200 and ready.json == {
        "status": "ready", "checks": {"database": "ok", "broker": "ok", "listener": "ok", "event_triggers": "ok"}}
    assert _metric(metrics, "millrace_event_trigger_connected", flow=flow_id, trigger="events", kind="amqp") == 1.0
    assert _metric(metrics, "millrace_event_trigger_messages_total", flow=flow_id, outcome="started") == 2.0
    assert _metric(metrics, "millrace_event_trigger_messages_total", flow=flow_id, outcome="refused") == 1.0
    assert _metric(metrics, "millrace_listener_leading") == 1.0

    shown = api.get(trigger["links"]["self"]).json
    assert (shown["state"], shown["fired"], shown["refused"]) == ("connected", 2, 1)
    fires = api.get(trigger["links"]["fires"]).json["items"]
    assert [(f["message_key"], f["status"]) for f in fires] == [("good2", "started"), ("bad", "refused"),
                                                                 ("good", "started")]
    assert all(f["run_id"] for f in fires if f["status"] == "started")
    assert api.get(f"/api/v1/runs/{fires[-1]['run_id']}").json["trigger"] == "amqp"
    refused = api.get(trigger["links"]["fires"] + "?status=refused").json["items"]
    assert [f["message_key"] for f in refused] == ["bad"] and "not a JSON object" in refused[0]["reason"]
    first = api.get(trigger["links"]["fires"] + "?limit=1").json
    second = api.get(trigger["links"]["fires"] + f"?limit=1&cursor={first['next_cursor']}").json
    assert [f["message_key"] for f in first["items"] + second["items"]] == ["good2", "bad"]


def test_unknown_triggers_and_cursors_are_refused_by_name(api):
    missing = api.get("/api/v1/event-triggers/e-nope")
    assert missing.status_code == 404 and "GET /api/v1/event-triggers" in missing.json["detail"]
    from orchestrator.store.event_triggers import event_trigger_id

    flow_id = unique("ops_cursor")
    api.save_flow(doubling_flow(flow_id, "    amqp: {queue: ops_cursor_q}"))
    bad = api.get(f"/api/v1/event-triggers/{event_trigger_id(flow_id, 'events')}/fires?cursor=abc")
    assert bad.status_code == 422 and bad.json["errors"][0]["path"] == "cursor"
