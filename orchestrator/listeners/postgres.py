"""PostgreSQL sources (psycopg): a table's row changes, exactly once, through an outbox;
or a LISTEN/NOTIFY channel, at most once.

For a table the listener installs, in the database the trigger names (Millrace's own by
default), a schema ``millrace_events`` holding the ``outbox`` table and the function
``write_outbox``, and on the table a row trigger ``millrace_<trigger id>`` calling it for the
changes the trigger's `on:` lists. A change is an outbox row written in the same transaction
as the change itself (so nothing is lost while no listener runs, and nothing rolled back is
seen); the listener reads the outbox rows in order, fires each, and deletes it only after the
fire is committed. A row's key is its outbox id. The message body is the row (as it is after
an insert or update, before a delete) as JSON; the headers are ``op``, ``table`` and ``old``
(the row before an update). Logical replication would need server settings (``wal_level``)
the user may not have; a trigger needs only the table's owner.
"""
from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from psycopg import sql

from orchestrator.listeners.lanes import Handler
from orchestrator.services.events import Message

BATCH = 50
WAKE = "millrace_events_outbox"  # notified on every outbox row, so the listener need not poll

INSTALL = """
CREATE SCHEMA IF NOT EXISTS millrace_events;
CREATE TABLE IF NOT EXISTS millrace_events.outbox (
    id bigserial PRIMARY KEY,
    trigger text NOT NULL,
    op text NOT NULL,
    table_name text NOT NULL,
    row jsonb,
    old jsonb,
    written_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_trigger ON millrace_events.outbox (trigger, id);
CREATE OR REPLACE FUNCTION millrace_events.write_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO millrace_events.outbox (trigger, op, table_name, row, old) VALUES (
        TG_ARGV[0], lower(TG_OP), TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
        CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END,
        CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END);
    PERFORM pg_notify('millrace_events_outbox', TG_ARGV[0]);
    RETURN NULL;
END $$;
"""


def trigger_name(trigger: str) -> str:
    return "millrace_" + trigger.replace("-", "_")


class PostgresTable:
    def __init__(self, url: str, source: dict[str, Any], trigger: str):
        self.url = url
        self.table = sql.Identifier(*source["table"].split("."))
        self.on = source.get("on", ["insert"])
        self.trigger = trigger
        self._conn: psycopg.Connection | None = None

    def open(self) -> None:
        self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        events = sql.SQL(" OR ").join(sql.SQL(op.upper()) for op in self.on)
        name = sql.Identifier(trigger_name(self.trigger))
        with self._conn.transaction():
            # One listener installs at a time (CREATE ... IF NOT EXISTS races with itself).
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('millrace_events'))")
            self._conn.execute(INSTALL)
            _drop_triggers(self._conn, self.trigger)  # on this table, and on one an earlier declaration named
            self._conn.execute(sql.SQL(
                "CREATE TRIGGER {} AFTER {} ON {} FOR EACH ROW EXECUTE FUNCTION millrace_events.write_outbox({})"
            ).format(name, events, self.table, sql.Literal(self.trigger)))
        self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(WAKE)))

    def receive(self, handle: Handler, timeout: float) -> None:
        assert self._conn is not None
        rows = self._conn.execute(
            "SELECT id, op, table_name, row, old FROM millrace_events.outbox WHERE trigger = %s ORDER BY id LIMIT %s",
            (self.trigger, BATCH)).fetchall()
        if not rows:
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                pass  # woken: the next call reads what was written
            return
        for outbox_id, op, table, row, old in rows:
            handle(Message(body=json.dumps(row, default=str).encode(), headers={"op": op, "table": table, "old": old},
                           topic=table, key=str(outbox_id)))
            self._conn.execute("DELETE FROM millrace_events.outbox WHERE id = %s", (outbox_id,))  # after the commit

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None


def _drop_triggers(conn: psycopg.Connection, trigger: str) -> None:
    tables = conn.execute("SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = %s",
                          (trigger_name(trigger),)).fetchall()
    for (table,) in tables:  # regclass text: already quoted as an identifier where it must be
        conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(trigger_name(trigger)), sql.SQL(table)))


def remove(url: str, trigger: str) -> None:
    """Take a removed trigger's row trigger off its table and its waiting outbox rows away."""
    with psycopg.connect(url, connect_timeout=5) as conn, conn.transaction():
        _drop_triggers(conn, trigger)
        if conn.execute("SELECT to_regclass('millrace_events.outbox')").fetchone()[0] is not None:
            conn.execute("DELETE FROM millrace_events.outbox WHERE trigger = %s", (trigger,))


class PostgresChannel:
    """LISTEN on a channel: each notification's payload is a message. At most once: a
    notification sent while no listener is connected is gone, and none is ever sent again."""

    def __init__(self, url: str, channel: str, trigger: str):
        self.url = url
        self.channel = channel
        self.trigger = trigger
        self._conn: psycopg.Connection | None = None

    def open(self) -> None:
        self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        _drop_triggers(self._conn, self.trigger)  # an earlier declaration of this trigger watched a table
        self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))

    def receive(self, handle: Handler, timeout: float) -> None:
        assert self._conn is not None
        for notice in self._conn.notifies(timeout=timeout):
            # Never redelivered, so never a duplicate: each its own key (the same payload twice is two runs).
            handle(Message(body=notice.payload.encode(), headers={"pid": notice.pid}, topic=notice.channel,
                           key=f"notify:{uuid.uuid4().hex}"))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
