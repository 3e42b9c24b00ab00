"""postgres triggers on the real PostgreSQL: each row change is one run through the outbox
Millrace's trigger fills (its id the key), an outbox row read again starts nothing, a change
that cannot start a run is refused and its row removed; a channel's notifications start runs."""
from __future__ import annotations

import time

import psycopg
import pytest

from orchestrator.store.event_triggers import event_trigger_id
from tests.integration.event_sources import PostgresTable
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
def table(engine):
    source = PostgresTable(engine, on="[insert, update, delete]")
    yield source
    source.close()


def outbox(table: PostgresTable, flow_id: str) -> list[tuple]:
    with psycopg.connect(table.url) as conn:
        return conn.execute("SELECT id, op, row, old FROM millrace_events.outbox WHERE trigger = %s ORDER BY id",
                            (event_trigger_id(flow_id, "events"),)).fetchall()


def test_each_row_change_is_one_run_and_an_outbox_row_read_again_starts_nothing(engine, worker, table):
    flow_id = unique("pg_orders")
    save(engine, doubling_flow(flow_id, table.trigger_yaml, inputs=(
        '    inputs: {n: "${{ trigger.body.n + {\'insert\': 0, \'update\': 100, \'delete\': 1000}'
        '[trigger.headers.op] }}"}')))
    listener = ListenerProcess()
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        table.execute("INSERT INTO {table} (n) VALUES (1), (2)")
        table.execute("UPDATE {table} SET n = 3 WHERE n = 2")
        table.execute("DELETE FROM {table} WHERE n = 1")
        finished_runs(engine, flow_id, 4)
    finally:
        listener.stop()
    fired = wait_fires(engine, flow_id, "events", 4)
    # As if the listener had died after committing the first fire and before deleting its row.
    first = min(int(f["message_key"]) for f in fired)
    table.execute("INSERT INTO millrace_events.outbox (id, trigger, op, table_name, row) VALUES "
                  "(%s, %s, 'insert', 'public.x', '{\"n\": 1}')", first, event_trigger_id(flow_id, "events"))
    table.execute("INSERT INTO {table} (n) VALUES (4)")  # while no listener runs: waits in the outbox
    listener = ListenerProcess()
    try:
        fired = wait_fires(engine, flow_id, "events", 5, listener)
        runs = finished_runs(engine, flow_id, 5)
        deadline = time.monotonic() + 30
        while outbox(table, flow_id) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        listener.stop()
    assert sorted(r.steps[0].result for r in runs) == [2, 4, 8, 206, 2002]
    assert all(r.status.value == "succeeded" and r.trigger == "postgres" for r in runs)
    assert len(fired) == 5 and outbox(table, flow_id) == []


def test_a_change_that_cannot_start_a_run_is_refused_and_its_outbox_row_removed(engine, worker, table):
    flow_id = unique("pg_refusals")
    save(engine, doubling_flow(flow_id, table.trigger_yaml.replace("[insert, update, delete]", "[insert]")))
    listener = ListenerProcess(env={"MILLRACE_TRIGGER_BODY_LIMIT": "100"})
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        table.execute("INSERT INTO {table} (n) VALUES (1)")  # the row {id, n, note} is not the flow's inputs
        table.execute("INSERT INTO {table} (n, note) VALUES (2, %s)", "x" * 200)
        table.execute("UPDATE {table} SET n = 5")  # not a change the trigger is on
        fired = sorted(wait_fires(engine, flow_id, "events", 2, listener), key=lambda f: f["id"])
        time.sleep(2)
    finally:
        listener.stop()
    assert [f["status"] for f in fired] == ["refused", "refused"]
    assert fired[0]["reason"].startswith("inputs.id: unknown input (this flow takes: n)")
    assert "over this installation's limit of 100" in fired[1]["reason"]
    assert outbox(table, flow_id) == []


def test_a_channel_notification_starts_a_run(engine, worker):
    flow_id = unique("pg_channel")
    channel = unique("millrace_t_orders")
    save(engine, doubling_flow(flow_id, f"    postgres: {{channel: {channel}}}"))
    listener = ListenerProcess()
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        wait_state(engine, flow_id, "events", "connected", listener)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, '{"n": 21}'))
            conn.execute("SELECT pg_notify(%s, %s)", (channel, '{"n": 21}'))  # never redelivered: a second run
        runs = finished_runs(engine, flow_id, 2)
    finally:
        listener.stop()
    assert [r.steps[0].result for r in runs] == [42, 42]


def test_millraces_own_tables_are_refused_at_save(engine):
    from orchestrator.errors import ValidationError

    for table in ("runs", "public.trigger_fires", "millrace_events.outbox"):
        with pytest.raises(ValidationError) as refused:
            save(engine, doubling_flow(unique("pg_own"), f"    postgres: {{table: {table}, on: [insert]}}"))
        assert refused.value.problems[0].path == "triggers[0].postgres.table"
        assert "one of Millrace's own tables" in refused.value.problems[0].message


def installed(table: PostgresTable, flow_id: str) -> list[str]:
    """The tables the trigger's row trigger is on."""
    with psycopg.connect(table.url) as conn:
        return [r[0] for r in conn.execute("SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = %s",
                                           ("millrace_" + event_trigger_id(flow_id, "events").replace("-", "_"),))]


def test_a_trigger_moved_to_another_table_or_removed_takes_its_row_trigger_along(engine, table):
    other = PostgresTable(engine)
    flow_id = unique("pg_moved")
    listener = ListenerProcess()
    try:
        save(engine, doubling_flow(flow_id, table.trigger_yaml))
        wait_state(engine, flow_id, "events", "connected", listener)
        assert installed(table, flow_id) == [table.table]
        save(engine, doubling_flow(flow_id, other.trigger_yaml))
        moved = trigger_of(engine, flow_id, "events").updated_at
        wait_state(engine, flow_id, "events", "connected", listener, since=moved)
        assert installed(table, flow_id) == [other.table]
        other.execute("INSERT INTO {table} (n) VALUES (1)")  # no worker: it waits in the outbox ...
        save(engine, doubling_flow(flow_id, "    postgres: {channel: elsewhere}").replace("id: events", "id: renamed"))
        deadline = time.monotonic() + 30
        while installed(table, flow_id) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        listener.stop()
        other.close()
    assert installed(table, flow_id) == []
    assert outbox(table, flow_id) == []  # ... and went with the trigger
