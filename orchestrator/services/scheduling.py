"""Schedules: which slots fire, and what becomes of each one.

The scheduler's leader calls :func:`fire_due` about once a second with the current time
(tests pass any time they like). Every slot of every schedule ends as one
``schedule_fires`` row, unique per (schedule, slot): ``started`` (with its run),
``skipped`` (paused, overlapping, or its run could not start: the reason says which),
``missed`` (late beyond the grace period, and the catch-up policy does not run it) or
``queued`` (overlap ``queue``: it starts when the previous run ends). The row and the run
are written in one transaction, so a slot starts one run at most, whichever scheduler
process writes it; the run is published after the commit (the sweeper publishes a run
whose publisher died in between).
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from orchestrator.definitions.cron import Cron, parse_cron
from orchestrator.definitions.inputs import validate_inputs
from orchestrator.definitions.parser import flow_from_stored
from orchestrator.definitions.triggers import CATCHUP, OVERLAP
from orchestrator.errors import Conflict, FlowError, NotFound, Problem, ValidationError
from orchestrator.execution.plan import build_plan
from orchestrator.services.runs import new_run
from orchestrator.services.scripts import pin_scripts
from orchestrator.store import audit, outbox, sql, versions
from orchestrator.store import schedules as rows
from orchestrator.store.admission import insert_run
from orchestrator.store.outbox import Owed

GRACE_S = 60.0  # a slot decided this late still fires as on time (a scheduler failover takes ~1 s)
MAX_RECORDED_MISSES = 1000  # per pass; older misses of a long outage are summed up on the oldest row



@dataclass(frozen=True)
class Started:
    """A run a slot started: its first message is owed, to send once its transaction committed."""

    run_id: str
    flow_id: str
    owed: Owed


# --- the scheduler's pass ------------------------------------------------------------------

def fire_due(engine: Engine, now: dt.datetime, actor: str = "scheduler", grace: float = GRACE_S) -> list[Started]:
    """Decide every slot due by ``now``; returns the runs started, to publish."""
    due, waiting = rows.due(engine, now)
    started: list[Started] = []
    for schedule_id in due:
        started += _decide(engine, schedule_id, now, actor, grace)
    for schedule_id in waiting:
        started += _start_queued(engine, schedule_id, actor)
    return started


def _decide(engine: Engine, schedule_id: str, now: dt.datetime, actor: str, grace: float) -> list[Started]:
    with engine.begin() as conn:
        s = rows.locked(conn, schedule_id)
        if s is None or not s.enabled or s.next_fire_at > now:
            return []  # another pass decided it, or it changed meanwhile
        cron = Cron(s.cron, s.timezone)
        slots = [s.next_fire_at, *cron.between(s.next_fire_at, now)]
        paused = [t for t in slots if s.paused_until is not None and t < s.paused_until]
        slots = slots[len(paused):]
        _record(conn, s.id, paused, "skipped", "paused", actor)
        late = [t for t in slots if (now - t).total_seconds() > grace]
        on_time = slots[len(late):]
        catch_up = _catch_up(s.catchup, s.max_catchup, late, bool(on_time))
        _record(conn, s.id, [t for t in late if t not in catch_up], "missed",
                f"no scheduler ran at this time; catchup is '{s.catchup}'", actor)
        started = [run for t in [*catch_up, *on_time] if (run := _fire(conn, s, t, actor)) is not None]
        last = slots[-1] if slots else (paused[-1] if paused else s.next_fire_at)
        if started:  # a long catch-up: its runs are owed from the commit on, not from their insert
            outbox.owed_from_now(conn, [r.owed for r in started])
        rows.advance(conn, s.id, cron.next_after(max(last, now)),
                     s.paused_until if s.paused_until is not None and s.paused_until > now else None)
    return started


def _catch_up(policy: str, cap: int, late: list[dt.datetime], on_time: bool) -> list[dt.datetime]:
    """Which late slots still run: none; the last one (unless an on-time slot runs anyway);
    or all of them, the newest ``cap`` if there are more."""
    if not late or policy == "none":
        return []
    if policy == "last":
        return [] if on_time else late[-1:]
    return late[-cap:]


def _fire(conn: Connection, s: Any, slot: dt.datetime, actor: str) -> Started | None:
    """Claim ``slot`` and start its run (or say why not); None when nothing is to publish."""
    fire_id = rows.claim(conn, s.id, slot, actor)
    if fire_id is None:
        return None  # this slot was decided before (by another scheduler, or a backfill)
    if s.overlap != "allow":
        active = rows.active_run(conn, s.id)
        queued_before = s.overlap == "queue" and rows.queued_besides(conn, s.id, fire_id)
        if active is not None and s.overlap == "skip":
            rows.set_fire(conn, fire_id, "skipped", f"run {active.id} of the previous slot is still {active.status}")
            return None
        if active is not None or queued_before:
            rows.set_fire(conn, fire_id, "queued", "waiting for the previous run to end")
            return None
    return _start(conn, s, fire_id, slot, actor)


def _start(conn: Connection, s: Any, fire_id: int, slot: dt.datetime, actor: str) -> Started | None:
    engine = conn.engine
    try:
        saved = versions.get_flow_version(engine, s.flow_id)  # NotFound once the flow is deleted
        version = saved["version"]
        plan = build_plan(flow_from_stored(saved["document"]), version)
        inputs = validate_inputs(plan.flow.inputs, s.inputs)
        pins = pin_scripts(engine, plan.flow)
        run_id = str(uuid.uuid4())
        created = insert_run(conn, new_run(plan, run_id, inputs, trigger="schedule", actor=actor, scripts=pins,
                                           schedule_id=s.id, labels=s.labels))
    except (FlowError, Conflict) as exc:  # the flow cannot start now: the slot says why
        rows.set_fire(conn, fire_id, "skipped", f"the run could not start: {exc}")
        return None
    # created.run_id: within a debounce window, the pending run this slot joined
    rows.set_fire(conn, fire_id, "started", None, created.run_id)
    return Started(created.run_id, s.flow_id, created.owed) if created.owed is not None else None


def _start_queued(engine: Engine, schedule_id: str, actor: str) -> list[Started]:
    """overlap: queue — the oldest queued slot starts once no run of the schedule is active."""
    with engine.begin() as conn:
        s = rows.locked(conn, schedule_id)
        if s is None:
            return []
        if rows.active_run(conn, s.id) is not None:
            return []
        oldest = rows.oldest_queued(conn, s.id)
        if oldest is None:
            return []
        started = _start(conn, s, oldest.id, oldest.fire_at, actor)
    return [started] if started is not None else []


def _record(conn: Connection, schedule_id: str, slots: list[dt.datetime], status: str, reason: str,
            actor: str) -> None:
    """One row per slot; past MAX_RECORDED_MISSES, the oldest row kept counts the rest."""
    if not slots:
        return
    kept = slots[-MAX_RECORDED_MISSES:]
    dropped = len(slots) - len(kept)
    for i, slot in enumerate(kept):
        note = f"{reason} (and {dropped} earlier slots since {slots[0].isoformat()})" if i == 0 and dropped else reason
        rows.claim(conn, schedule_id, slot, actor, status, note)


# --- schedules through the API ------------------------------------------------------------

@dataclass(frozen=True)
class ScheduleSpec:
    flow_id: str
    cron: str
    timezone: str = "UTC"
    inputs: dict[str, Any] | None = None
    labels: dict[str, str] | None = None  # over the flow's, on every run it starts
    catchup: str = "last"
    max_catchup: int = 100
    overlap: str = "allow"
    enabled: bool = True
    paused_until: dt.datetime | None = None


def create_schedule(engine: Engine, spec: ScheduleSpec, actor: str) -> str:
    cron = _checked(engine, spec)
    schedule_id = "s-" + uuid.uuid4().hex[:20]
    at = sql.now()
    rows.insert_schedule(engine, dict(
        id=schedule_id, flow_id=spec.flow_id, trigger_id=None, cron=cron.expression, timezone=spec.timezone,
        inputs=spec.inputs or {}, labels=spec.labels or None, catchup=spec.catchup,
        max_catchup=spec.max_catchup, overlap=spec.overlap,
        enabled=spec.enabled, paused_until=spec.paused_until, next_fire_at=cron.next_after(at),
        created_at=at, updated_at=at), actor)
    return schedule_id


def update_schedule(engine: Engine, schedule_id: str, changes: dict[str, Any], actor: str) -> None:
    """Change a schedule made through the API, or pause/enable a declared one (its other
    fields belong to its flow document). A new cron, zone, or re-enabling starts from now."""
    current = get_schedule(engine, schedule_id)
    if current["trigger_id"] is not None:
        owned = sorted(set(changes) - {"enabled", "paused_until"})
        if owned:
            raise ValidationError([Problem(name, f"declared in flow {current['flow_id']}'s triggers; change it "
                                                 "there (only enabled and paused_until change here)")
                                   for name in owned])
    merged = {**{k: current[k] for k in ScheduleSpec.__dataclass_fields__}, **changes}
    cron = _checked(engine, ScheduleSpec(**merged))
    values = {**changes, "updated_at": sql.now()}
    if any(k in changes for k in ("cron", "timezone")) or (changes.get("enabled") and not current["enabled"]):
        values["next_fire_at"] = cron.next_after(sql.now())
    rows.change_schedule(engine, schedule_id, values, actor, changes)


def delete_schedule(engine: Engine, schedule_id: str, actor: str) -> None:
    current = get_schedule(engine, schedule_id)
    if current["trigger_id"] is not None:
        raise ValidationError([Problem("id", f"declared in flow {current['flow_id']}'s triggers; remove it "
                                             "there, or pause it here")])
    rows.remove_schedule(engine, schedule_id, actor)


def get_schedule(engine: Engine, schedule_id: str) -> dict[str, Any]:
    row = rows.schedule_row(engine, schedule_id)
    if row is None:
        raise NotFound(f"schedule '{schedule_id}' does not exist")
    return row


def backfill(engine: Engine, schedule_id: str, start: dt.datetime, end: dt.datetime, actor: str,
             cap: int = 1000) -> tuple[list[Started], int]:
    """Start a run for every slot in [start, end] that has not run: slots never decided and
    slots missed or skipped. Slots that started (or wait in the queue) are left alone.
    Returns the runs to publish and how many slots were already done."""
    s_row = get_schedule(engine, schedule_id)
    cron = Cron(s_row["cron"], s_row["timezone"])
    slots = cron.between(start - dt.timedelta(microseconds=1), end, limit=cap + 1)
    if len(slots) > cap:
        raise ValidationError([Problem("end", f"more than {cap} slots in this range; backfill a shorter one")])
    started: list[Started] = []
    done = 0
    with engine.begin() as conn:
        s = rows.locked(conn, schedule_id, wait=True)
        if s is None:
            raise NotFound(f"schedule '{schedule_id}' does not exist")
        for slot in slots:
            earlier = rows.fire_at(conn, schedule_id, slot)
            if earlier is not None and earlier.status in ("started", "queued"):
                done += 1
                continue
            if earlier is not None:
                rows.forget_fire(conn, earlier.id)
            fire_id = rows.claim(conn, schedule_id, slot, actor)
            run = _start(conn, s, fire_id, slot, actor)
            if run is not None:
                started.append(run)
        audit.audit(conn, actor, "schedule.backfilled", f"schedule:{schedule_id}", start=start.isoformat(),
                      end=end.isoformat(), started=len(started), already=done)
    return started, done


def _checked(engine: Engine, spec: ScheduleSpec) -> Cron:
    problems = []
    try:
        cron = parse_cron(spec.cron, spec.timezone)
    except ValidationError as exc:
        problems += exc.problems
    if spec.catchup not in CATCHUP:
        problems.append(Problem("catchup", f"one of: {', '.join(CATCHUP)}"))
    if spec.overlap not in OVERLAP:
        problems.append(Problem("overlap", f"one of: {', '.join(OVERLAP)}"))
    try:
        _, document = versions.load_flow_document(engine, spec.flow_id)
        flow = flow_from_stored(document)
        validate_inputs(flow.inputs, spec.inputs or {})
    except NotFound as exc:
        problems.append(Problem("flow", str(exc)))
    except ValidationError as exc:
        problems += exc.problems
    if problems:
        raise ValidationError(problems)
    return cron

