"""How far back a purge may reach: never inside the idempotency window, whatever the retention."""
from __future__ import annotations

import datetime as dt

from orchestrator.services.retention import Policy

AT = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def test_a_retention_longer_than_the_idempotency_window_decides() -> None:
    assert Policy(keep=None).cutoff(30 * 86400.0, AT) == AT - dt.timedelta(days=30)


def test_a_retention_shorter_than_the_idempotency_window_waits_for_the_window() -> None:
    assert Policy(keep=None).cutoff(60.0, AT) == AT - dt.timedelta(hours=24)
    assert Policy(keep=None, idempotency_window=3600.0).cutoff(60.0, AT) == AT - dt.timedelta(hours=1)
