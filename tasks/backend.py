"""Celery result backend on the system-of-record database, for chords only.

Run and step results live in ``runs``/``step_runs``; tasks ignore Celery results. What a
backend must do for Millrace is join chords: each finished header part writes one row
(idempotent: a redelivered part writes nothing new), and the part that completes the set
wins a fire-once update and sends the body. No polling ``chord_unlock`` task, no Redis.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import states
from celery.backends.base import BaseBackend
from celery.canvas import maybe_signature
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from orchestrator.store.database import make_engine
from orchestrator.store.models import Chord, ChordPart
from orchestrator.store.sql import dialect_insert, now

log = logging.getLogger("millrace.backend")
chords = Chord.__table__
chord_parts = ChordPart.__table__
PART_DEADLINE_S = 600.0


class DatabaseBackend(BaseBackend):
    """Joins chords through ``chords``/``chord_parts`` rows."""

    supports_native_join = False
    persistent = True

    _engine: Engine | None = None
    _engine_pid: int = 0

    @property
    def engine(self) -> Engine:
        # The backend may be made before the pool forks: each process gets its own engine.
        if self._engine is None or self._engine_pid != os.getpid():
            self._engine = make_engine(self.app.conf.millrace_database_url)
            self._engine_pid = os.getpid()
        return self._engine

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> None:
        group_id, results = header_result_args[0], header_result_args[1]
        stmt = dialect_insert(self.engine, chords).values(
            group_id=group_id, size=len(results), created_at=now()).on_conflict_do_nothing()
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(chords).where(chords.c.group_id == group_id).values(size=chord_size))

    def on_chord_part_return(self, request: Any, state: str, result: Any, **kwargs: Any) -> None:
        # Called after the task's own work is committed: losing the part would leave the
        # chord waiting forever, so a database outage is waited out here.
        pause = 0.5
        deadline = time.monotonic() + PART_DEADLINE_S
        while True:
            try:
                return self._record_part(request, state, result)
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("chord part of %s waits for the database: %s", request.group, exc.orig)
                self._engine = None
                time.sleep(pause)
                pause = min(pause * 2, 10.0)

    def _record_part(self, request: Any, state: str, result: Any) -> None:
        group_id = request.group
        if not group_id or request.chord is None:
            return
        if state != states.SUCCESS:
            # Millrace tasks record their own failures and stop their chain; reaching here
            # means a task crashed outside that: the chord cannot complete.
            log.error("chord %s part %s ended %s: %r", group_id, request.group_index, state, result)
            return
        part = dialect_insert(self.engine, chord_parts).values(
            group_id=group_id, part_index=request.group_index or 0, state=state, result=result,
        ).on_conflict_do_nothing()
        # The part is committed before counting, so whichever part commits last sees all.
        with self.engine.begin() as conn:
            conn.execute(part)
        counted = select(func.count()).select_from(chord_parts).where(
            chord_parts.c.group_id == group_id).scalar_subquery()
        with self.engine.begin() as conn:
            fired = conn.execute(
                update(chords)
                .where(chords.c.group_id == group_id, chords.c.fired_at.is_(None), chords.c.size <= counted)
                .values(fired_at=now()).returning(chords.c.size)
            ).first()
            if fired is None:
                return
            parts = conn.execute(
                select(chord_parts.c.result).where(chord_parts.c.group_id == group_id)
                .order_by(chord_parts.c.part_index)
            ).scalars().all()
            # Sent before the commit: if the commit fails the firing is undone and a
            # redelivered part fires again (at least once); the body is idempotent.
            maybe_signature(request.chord, app=self.app).delay(list(parts))
            conn.execute(delete(chord_parts).where(chord_parts.c.group_id == group_id))

    def _store_result(self, task_id: str, result: Any, state: str, traceback: Any = None,
                      request: Any = None, **kwargs: Any) -> Any:
        return result  # results are recorded in step_runs by the tasks themselves

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        return {"status": states.PENDING, "result": None, "task_id": task_id}

    def _forget(self, task_id: str) -> None:
        return None

    def _save_group(self, group_id: str, result: Any) -> Any:
        return result

    def _restore_group(self, group_id: str) -> None:
        return None

    def _delete_group(self, group_id: str) -> None:
        return None


