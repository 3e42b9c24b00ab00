"""Schedules against a controllable clock: the scheduler's pass is called with any `now`,
against the real database; nothing waits for a real minute."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from orchestrator.definitions.parser import parse_flow
from orchestrator.services.saving import save_flow
from orchestrator.services.scheduling import ScheduleSpec, create_schedule, fire_due, get_schedule, update_schedule
from orchestrator.store import sql, tables, triggers, versions

pytestmark = pytest.mark.integration
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
FLOW = ("id: sched/{name}\ninputs:\n  who: {{type: string, default: cron}}\n"
        "steps:\n  - {{id: a, bash: echo $W, with: {{W: '${{{{ inputs.who }}}}'}}}}\n")


def saved(engine, name: str, extra: str = "") -> str:
    text = FLOW.format(name=name) + extra
    flow = parse_flow(text)
    save_flow(engine, flow, text)
    return flow.id


def schedule(engine, name: str, **spec) -> str:
    """An hourly schedule of a fresh flow whose next slot is T0."""
    flow_id = saved(engine, name)
    schedule_id = create_schedule(engine, ScheduleSpec(flow_id=flow_id, cron=spec.pop("cron", "0 * * * *"),
                                                       **spec), "test")
    with engine.begin() as conn:
        conn.execute(update(tables.schedules).where(tables.schedules.c.id == schedule_id)
                     .values(next_fire_at=T0))
    return schedule_id


def fires(engine, schedule_id: str) -> list[tuple[str, str]]:
    """(slot time HH:MM, status) of every decided slot, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(tables.schedule_fires).where(
            tables.schedule_fires.c.schedule_id == schedule_id).order_by(tables.schedule_fires.c.fire_at))
        return [(r.fire_at.astimezone(UTC).strftime("%H:%M"), r.status) for r in rows]


def runs_of(engine, schedule_id: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(tables.runs).where(
            tables.runs.c.schedule_id == schedule_id).order_by(tables.runs.c.created_at)).mappings()]


def end_runs(engine, schedule_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(tables.runs).where(tables.runs.c.schedule_id == schedule_id)
                     .values(status="succeeded", finished_at=sql.now()))


def test_on_time_slots_fire_once_however_many_passes_decide_them(engine) -> None:
    s = schedule(engine, "once")
    first = fire_due(engine, T0 + dt.timedelta(seconds=1))
    again = fire_due(engine, T0 + dt.timedelta(seconds=2))
    assert len([r for r in first if r.flow_id == "sched/once"]) == 1 and not [r for r in again
                                                                            if r.flow_id == "sched/once"]
    assert fires(engine, s) == [("10:00", "started")]
    run = runs_of(engine, s)[0]
    assert run["trigger"] == "schedule" and run["inputs"] == {"who": "cron"}
    assert get_schedule(engine, s)["next_fire_at"] == T0 + dt.timedelta(hours=1)


@pytest.mark.parametrize(("catchup", "cap", "expected"), [
    ("none", 100, [("10:00", "missed"), ("11:00", "missed"), ("12:00", "missed"), ("13:00", "missed")]),
    ("last", 100, [("10:00", "missed"), ("11:00", "missed"), ("12:00", "missed"), ("13:00", "started")]),
    ("all", 100, [("10:00", "started"), ("11:00", "started"), ("12:00", "started"), ("13:00", "started")]),
    ("all", 2, [("10:00", "missed"), ("11:00", "missed"), ("12:00", "started"), ("13:00", "started")]),
])
def test_slots_missed_while_no_scheduler_ran_follow_the_catchup_policy(engine, catchup, cap, expected) -> None:
    s = schedule(engine, f"catchup_{catchup}_{cap}", catchup=catchup, max_catchup=cap)
    fire_due(engine, T0 + dt.timedelta(hours=3, minutes=30))  # down from 10:00 to 13:30
    assert fires(engine, s) == expected
    assert len(runs_of(engine, s)) == sum(status == "started" for _, status in expected)
    assert get_schedule(engine, s)["next_fire_at"] == T0 + dt.timedelta(hours=4)


def test_last_runs_no_extra_catch_up_when_a_slot_is_on_time(engine) -> None:
    s = schedule(engine, "last_on_time")
    fire_due(engine, T0 + dt.timedelta(hours=2, seconds=20))  # 12:00 is 20 s late: on time
    assert fires(engine, s) == [("10:00", "missed"), ("11:00", "missed"), ("12:00", "started")]


@pytest.mark.parametrize(("overlap", "second"), [("allow", "started"), ("skip", "skipped"), ("queue", "queued")])
def test_a_slot_while_the_previous_run_goes_on_follows_the_overlap_policy(engine, overlap, second) -> None:
    s = schedule(engine, f"overlap_{overlap}", overlap=overlap)
    fire_due(engine, T0 + dt.timedelta(seconds=1))
    fire_due(engine, T0 + dt.timedelta(hours=1, seconds=1))
    assert fires(engine, s) == [("10:00", "started"), ("11:00", second)]
    if overlap == "skip":
        with engine.connect() as conn:
            reason = conn.execute(select(tables.schedule_fires.c.reason).where(
                tables.schedule_fires.c.schedule_id == s, tables.schedule_fires.c.status == "skipped")).scalar()
        assert "is still queued" in reason
    if overlap == "queue":
        fire_due(engine, T0 + dt.timedelta(hours=1, seconds=5))
        assert fires(engine, s)[1] == ("11:00", "queued")  # the first run still goes on
        end_runs(engine, s)
        fire_due(engine, T0 + dt.timedelta(hours=1, seconds=6))
        assert fires(engine, s) == [("10:00", "started"), ("11:00", "started")]
        assert len(runs_of(engine, s)) == 2


def test_slots_during_a_pause_are_recorded_skipped_then_it_fires_again(engine) -> None:
    s = schedule(engine, "paused", paused_until=T0 + dt.timedelta(hours=1, minutes=30))
    for minutes in (1, 61, 121):
        fire_due(engine, T0 + dt.timedelta(minutes=minutes))
    assert fires(engine, s) == [("10:00", "skipped"), ("11:00", "skipped"), ("12:00", "started")]
    assert get_schedule(engine, s)["paused_until"] is None


def test_a_disabled_schedule_decides_nothing_and_resumes_from_now(engine) -> None:
    s = schedule(engine, "disabled", enabled=False)
    fire_due(engine, T0 + dt.timedelta(hours=5))
    assert fires(engine, s) == []
    update_schedule(engine, s, {"enabled": True}, "test")
    resumed = get_schedule(engine, s)["next_fire_at"]
    assert resumed > sql.now() - dt.timedelta(hours=1)  # from now on, not a burst of old slots


def test_a_slot_whose_run_cannot_start_is_recorded_with_the_reason(engine) -> None:
    s = schedule(engine, "bad_inputs")
    text = "id: sched/bad_inputs\ninputs:\n  n: {type: integer}\nsteps:\n  - {id: a, bash: echo}\n"
    save_flow(engine, parse_flow(text), text)  # now it needs an input the schedule lacks
    fire_due(engine, T0 + dt.timedelta(seconds=1))
    with engine.connect() as conn:
        row = conn.execute(select(tables.schedule_fires).where(tables.schedule_fires.c.schedule_id == s)).one()
    assert row.status == "skipped" and "inputs.n: required input missing" in row.reason


def test_a_flows_cron_triggers_are_its_schedules(engine) -> None:
    base = "id: sched/declared\nsteps:\n  - {id: a, bash: echo}\n"
    text = base + "triggers:\n  - {id: nightly, cron: '0 2 * * *', timezone: Europe/Paris, overlap: skip}\n"
    save_flow(engine, parse_flow(text), text)
    with engine.connect() as conn:
        rows = conn.execute(select(tables.schedules).where(tables.schedules.c.flow_id == "sched/declared")).all()
    assert [(r.trigger_id, r.cron, r.timezone, r.overlap) for r in rows] == [
        ("nightly", "0 2 * * *", "Europe/Paris", "skip")]
    assert rows[0].next_fire_at.astimezone(dt.timezone(dt.timedelta(hours=1))).hour in (2, 3)
    moved = text.replace("0 2 * * *", "0 4 * * *")
    save_flow(engine, parse_flow(moved), moved)
    assert get_schedule(engine, rows[0].id)["cron"] == "0 4 * * *"
    save_flow(engine, parse_flow(base), base)  # trigger removed: schedule gone
    with engine.connect() as conn:
        assert conn.execute(select(tables.schedules).where(
            tables.schedules.c.flow_id == "sched/declared")).all() == []


def test_a_slot_of_a_deleted_flow_is_recorded_skipped(engine) -> None:
    s = schedule(engine, "deleted")
    versions.delete_versioned(engine, versions.FLOWS, "sched/deleted", "test")
    fire_due(engine, T0 + dt.timedelta(seconds=1))
    with engine.connect() as conn:
        row = conn.execute(select(tables.schedule_fires).where(tables.schedule_fires.c.schedule_id == s)).one()
    assert row.status == "skipped" and "flow 'sched/deleted' does not exist" in row.reason
    assert runs_of(engine, s) == []


def test_a_pause_made_through_the_api_survives_saving_the_flow_again(engine) -> None:
    text = "id: sched/kept_paused\nsteps:\n  - {id: a, bash: echo}\ntriggers:\n  - {id: hourly, cron: '@hourly'}\n"
    save_flow(engine, parse_flow(text), text)
    schedule_id = triggers.declared_schedule_id("sched/kept_paused", "hourly")
    update_schedule(engine, schedule_id, {"enabled": False}, "operator")
    edited = text.replace("echo}", "echo edited}")
    save_flow(engine, parse_flow(edited), edited)  # a developer changes a step
    assert get_schedule(engine, schedule_id)["enabled"] is False
    off = edited.replace("'@hourly'}", "'@hourly', enabled: false}")
    on = off.replace("enabled: false", "enabled: true")
    save_flow(engine, parse_flow(off), off)
    save_flow(engine, parse_flow(on), on)  # the document itself turns it on: it is on
    assert get_schedule(engine, schedule_id)["enabled"] is True


def test_fires_and_audit_page_with_the_cursor_every_list_uses(engine, api) -> None:
    """A generic pager (limit, cursor in, next_cursor out, strings) walks every page once."""
    s = schedule(engine, "paged", catchup="none")
    fire_due(engine, T0 + dt.timedelta(hours=4, minutes=30))  # five slots decided, all missed
    seen, cursor = [], None
    for _ in range(10):
        page = api.get(f"/api/v1/schedules/{s}/fires?limit=2" + (f"&cursor={cursor}" if cursor else "")).json
        seen += [f["fire_at"] for f in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert len(seen) == len(set(seen)) == len(fires(engine, s)) == 5 and seen == sorted(seen, reverse=True)
    page = api.get("/api/v1/audit?limit=2").json
    assert isinstance(page["next_cursor"], str)
    after = api.get(f"/api/v1/audit?limit=2&cursor={page['next_cursor']}").json
    assert {e["id"] for e in after["items"]}.isdisjoint({e["id"] for e in page["items"]})
