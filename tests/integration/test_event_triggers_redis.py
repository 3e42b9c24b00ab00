"""redis triggers on the real Redis: one run per stream entry (its id is its key), the
group's entries read again start nothing, a malformed entry is refused and acknowledged."""
from __future__ import annotations

import json

import pytest

from tests.integration.event_sources import RedisStream
from tests.integration.event_triggers import (
    ListenerProcess,
    doubling_flow,
    finished_runs,
    save,
    unique,
    wait_fires,
    wait_state,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(engine):
    source = RedisStream(engine)
    yield source
    source.close()


def group(flow_id: str) -> str:
    from orchestrator.store.event_triggers import broker_name, event_trigger_id

    return broker_name(event_trigger_id(flow_id, "events"), "redis")


def test_each_entry_is_one_run_and_entries_read_again_start_nothing(engine, worker, stream):
    flow_id = unique("redis_orders")
    save(engine, doubling_flow(flow_id, stream.trigger_yaml, inputs=(
        '    inputs: {n: "${{ trigger.body.n + (trigger.headers.extra | int) }}"}')))
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        ids = [stream.publish(json.dumps({"n": n}).encode(), extra="1") for n in range(3)]
        finished_runs(engine, flow_id, 3)
    finally:
        listener.stop()
    stream.client.xgroup_setid(stream.stream, group(flow_id), "0")  # as if none had been read
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        ids.append(stream.publish(json.dumps({"n": 10}).encode(), extra="0"))
        fired = wait_fires(engine, flow_id, "events", 4, listener)
        runs = finished_runs(engine, flow_id, 4)
    finally:
        listener.stop()
    assert sorted(r.steps[0].result for r in runs) == [2, 4, 6, 20]
    assert all(r.status.value == "succeeded" and r.trigger == "redis" for r in runs)
    assert sorted(f["message_key"] for f in fired) == sorted(ids)
    info = stream.client.xinfo_groups(stream.stream)[0]
    assert (info["pending"], info["last-delivered-id"].decode()) == (0, ids[-1])  # all read again, all acknowledged


def test_entries_left_pending_by_a_killed_listener_are_read_again_once(engine, worker, stream):
    flow_id = unique("redis_pending")
    save(engine, doubling_flow(flow_id, stream.trigger_yaml, inputs='    inputs: {n: "${{ trigger.body.n }}"}'))
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        stream.publish(json.dumps({"n": 1}).encode())
        finished_runs(engine, flow_id, 1)
    finally:
        listener.stop()
    # Delivered to the group's consumer and never acknowledged, as when a listener dies between the two.
    pending_id = stream.publish(json.dumps({"n": 2}).encode())
    stream.client.xreadgroup(group(flow_id), "millrace", {stream.stream: ">"}, count=1)
    listener = ListenerProcess()
    try:
        fired = wait_fires(engine, flow_id, "events", 2, listener)
        runs = finished_runs(engine, flow_id, 2)
    finally:
        listener.stop()
    assert pending_id in {f["message_key"] for f in fired}
    assert sorted(r.steps[0].result for r in runs) == [2, 4]
    assert stream.client.xinfo_groups(stream.stream)[0]["pending"] == 0


def test_a_malformed_entry_is_refused_saying_why_and_acknowledged(engine, worker, stream):
    flow_id = unique("redis_refusals")
    save(engine, doubling_flow(flow_id, stream.trigger_yaml))
    listener = ListenerProcess(env={"MILLRACE_TRIGGER_BODY_LIMIT": "100"})
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        text = stream.publish(b"not json")
        wrong = stream.publish(json.dumps({"n": "seven"}).encode())
        big = stream.publish(json.dumps({"n": 1, "pad": "x" * 200}).encode())
        good = stream.client.xadd(stream.stream, {"n": "5"}).decode()  # no body field: the fields are the body
        fired = {f["message_key"]: f for f in wait_fires(engine, flow_id, "events", 4, listener)}
    finally:
        listener.stop()
    assert "not a JSON object" in fired[text]["reason"] and fired[wrong]["reason"].startswith("inputs.n:")
    assert "over this installation's limit of 100" in fired[big]["reason"]
    assert fired[good]["status"] == "refused" and fired[good]["reason"].startswith("inputs.n:")  # "5" is text
    assert stream.client.xinfo_groups(stream.stream)[0]["pending"] == 0
