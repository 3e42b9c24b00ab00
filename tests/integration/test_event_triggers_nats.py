"""nats triggers on the real NATS JetStream: one run per message (its stream sequence is
its key), every message read again by a consumer made anew starts nothing, a malformed
message is refused and acknowledged."""
from __future__ import annotations

import json

import pytest

from tests.integration.event_sources import NatsStream
from tests.integration.event_triggers import (
    ListenerProcess,
    doubling_flow,
    finished_runs,
    save,
    trigger_of,
    unique,
    wait_fires,
    wait_state,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(engine):
    source = NatsStream(engine)
    yield source
    source.close()


def durable(flow_id: str) -> str:
    from orchestrator.store.event_triggers import broker_name, event_trigger_id

    return broker_name(event_trigger_id(flow_id, "events"), "nats")


def test_each_message_is_one_run_and_a_redelivery_of_the_whole_stream_starts_nothing(engine, worker, stream):
    flow_id = unique("nats_orders")
    save(engine, doubling_flow(flow_id, stream.trigger_yaml, inputs=(
        '    inputs: {n: "${{ trigger.body.n + (trigger.headers.sender == \'shop\') }}"}')))
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        for n in range(3):
            stream.publish(json.dumps({"n": n}).encode())
        finished_runs(engine, flow_id, 3)
    finally:
        listener.stop()
    stream.delete_consumer(durable(flow_id))  # the next listener makes it again and is given all 3 again
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        stream.publish(json.dumps({"n": 10}).encode())
        fired = wait_fires(engine, flow_id, "events", 4, listener)
        runs = finished_runs(engine, flow_id, 4)
        consumer = stream.consumer(durable(flow_id))
    finally:
        listener.stop()
    assert sorted(r.steps[0].result for r in runs) == [2, 4, 6, 22]
    assert all(r.status.value == "succeeded" and r.trigger == "nats" for r in runs)
    assert len(fired) == 4 and sorted(f["message_key"].rsplit(":", 1)[1] for f in fired) == ["1", "2", "3", "4"]
    assert consumer.delivered.stream_seq == 4  # the three first were delivered again ...
    assert (consumer.num_pending, consumer.num_ack_pending) == (0, 0)  # ... and all acknowledged


def test_a_malformed_message_is_refused_saying_why_and_acknowledged(engine, worker, stream):
    flow_id = unique("nats_refusals")
    save(engine, doubling_flow(flow_id, stream.trigger_yaml))
    listener = ListenerProcess(env={"MILLRACE_TRIGGER_BODY_LIMIT": "100"})
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        stream.publish(b"not json")
        stream.publish(json.dumps({"n": "seven"}).encode())
        stream.publish(json.dumps({"n": 1, "pad": "x" * 200}).encode())
        stream.publish(json.dumps({"n": 5}).encode())
        fired = sorted(wait_fires(engine, flow_id, "events", 4, listener), key=lambda f: f["id"])
        finished_runs(engine, flow_id, 1)
        consumer = stream.consumer(durable(flow_id))
    finally:
        listener.stop()
    assert [f["status"] for f in fired] == ["refused", "refused", "refused", "started"]
    assert "not a JSON object" in fired[0]["reason"] and fired[1]["reason"].startswith("inputs.n:")
    assert "over this installation's limit of 100" in fired[2]["reason"]
    assert (consumer.num_pending, consumer.num_ack_pending) == (0, 0)


def test_a_trigger_given_another_subject_reads_that_subject(engine, worker, stream):
    flow_id = unique("nats_moved")
    save(engine, doubling_flow(flow_id, stream.trigger_yaml))
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        stream.publish(json.dumps({"n": 1}).encode())
        finished_runs(engine, flow_id, 1)
        moved = stream.trigger_yaml.replace(stream.subject, f"{stream.stream}.invoices")
        save(engine, doubling_flow(flow_id, moved))
        changed = trigger_of(engine, flow_id, "events").updated_at
        wait_state(engine, flow_id, "events", "connected", listener, since=changed)
        stream.publish(json.dumps({"n": 2}).encode())  # on the old subject: not this trigger's any more
        stream.publish(json.dumps({"n": 3}).encode(), subject=f"{stream.stream}.invoices")
        runs = finished_runs(engine, flow_id, 2)
        consumer = stream.consumer(durable(flow_id))
    finally:
        listener.stop()
    assert sorted(r.steps[0].result for r in runs) == [2, 6]
    assert consumer.config.filter_subject == f"{stream.stream}.invoices"
