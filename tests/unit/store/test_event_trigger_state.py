"""What anyone is told of an event trigger's connection: a "connected" nobody repeated is stale."""
from __future__ import annotations

import datetime as dt

from orchestrator.store.event_triggers import STALE_AFTER, EventTriggerRow

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def _row(state: str, said: dt.datetime | None) -> EventTriggerRow:
    return EventTriggerRow(id="e-1", flow_id="f", trigger_id="t", kind="amqp", source={}, inputs=None, enabled=True,
                           updated_at=NOW, state=state, state_detail=None, state_at=said, fired=0, refused=0)


def test_a_recent_connected_report_is_believed() -> None:
    assert _row("connected", NOW - STALE_AFTER + dt.timedelta(seconds=1)).state_now(NOW) == "connected"


def test_a_connected_report_nobody_repeated_is_stale() -> None:
    assert _row("connected", NOW - STALE_AFTER - dt.timedelta(seconds=1)).state_now(NOW) == "stale"
    assert _row("connected", None).state_now(NOW) == "stale"


def test_a_naive_time_from_sqlite_reads_as_utc() -> None:
    assert _row("connected", (NOW - dt.timedelta(seconds=5)).replace(tzinfo=None)).state_now(NOW) == "connected"


def test_disconnected_and_pending_stay_what_was_said() -> None:
    assert _row("disconnected", NOW - dt.timedelta(days=1)).state_now(NOW) == "disconnected"
    assert _row("pending", None).state_now(NOW) == "pending"
