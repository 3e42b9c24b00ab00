"""Where a restart starts and what it reuses, decided from the plan and the recorded attempts.

A restart point is a concrete step path as the records write it: ``build``, ``each[3].work``
(item 3 of a for_each), ``par.fast.run`` (branch ``fast`` of a parallel), ``pick.big`` (a
step of a switch case), ``count[2].inc`` (iteration 2 of a loop). The restarted step and
everything after it re-run, and so do the composite steps holding it; what came before it,
the other items of a for_each and the other branches of a parallel are reused: their
recorded outcomes are copied into the new run, whose workers replay them instead of running
them. From the failed steps, every step whose last attempt failed (and that holds no failed
step of its own) is a restart point.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from orchestrator.errors import Problem, ValidationError
from orchestrator.execution.lifecycle import REUSABLE_STEP, StepStatus
from orchestrator.execution.plan import Plan

_INDEX = re.compile(r"\[(\d+)\]")
_ITERATING = ("for_each", "loop")  # composite steps whose children are recorded under an index
_AFTER = ("on_failure.", "finally.")  # the after-phases' steps: never reused nor restart points, they run again


class Recorded(Protocol):
    """A recorded attempt, as far as a restart reads it (the store's ``Recorded`` is one)."""

    id: int
    path: str
    kind: str
    attempt: int
    status: StepStatus


@dataclass(frozen=True)
class RestartRequest:
    """What a restart asks for: a step path to start at, or the failed steps; on the run's
    flow version or the latest one."""

    start: str | None = None
    failed: bool = False
    latest: bool = False


@dataclass(frozen=True)
class RestartChoice:
    """A restart decided: the points it re-runs from, the top-level step its canvas starts
    at (the ones before it hand on their outcomes), and the attempts it reuses."""

    points: tuple[str, ...]
    first: int
    reused: tuple[int, ...]  # the ids of the attempts whose outcomes the new run takes


# A step's place in the flow, level by level from the top: which of its parent's step lists
# (branch or case), its position there, and, for a for_each or loop, the item or iteration
# its children are under (None at the step itself).
Trail = tuple[tuple[int, int, int | None], ...]


def choose(plan: Plan, steps: Iterable[Recorded], request: RestartRequest,
           stopped_at: str | None = None) -> RestartChoice:
    """Decide a restart of a run whose attempts are ``steps`` on ``plan`` (raises
    ValidationError naming the path when the point is not a step of the plan). From the
    failed steps of a run a stop_if ended (``stopped_at``; a finally step failed it), the
    stopping step is replayed, so its stop_if ends the new run before the same steps."""
    last = _last_attempts(steps)
    places = _places(plan)
    if request.failed:
        points = _failed_points(last)
    else:
        assert request.start is not None
        _check_point(plan, places, request.start, last)
        points = (request.start,)
    trails = {p: _trail(plan, places, p) for p in points}
    point_trails = [t for t in trails.values() if t is not None]
    reused = []
    for path, view in last.items():
        if view.status.value not in REUSABLE_STEP or path.startswith(_AFTER):
            continue
        trail = _trail(plan, places, path)
        if trail is None or plan.node(_static(path)).kind != view.kind:
            continue  # not a step of this version (a restart on the latest one): it runs
        if not any(_reruns(plan, trail, point) for point in point_trails):
            reused.append(view)
    kept = {v.path for v in reused}
    starts = [t[0][1] for t in point_trails]
    first = min(starts) if starts else next(
        (i for i, path in enumerate(plan.main) if path not in kept), len(plan.main))
    stop = _trail(plan, places, stopped_at) if request.failed and stopped_at is not None else None
    if stop is not None:
        first = min(first, stop[0][1])
    missing = [path for path in plan.main[:first] if path not in kept]
    if missing:
        before = f" before '{points[0]}'" if points else ""
        raise ValidationError([Problem("from", f"step '{missing[0]}'{before} has no recorded outcome to reuse; "
                                               "restart from it instead")])
    return RestartChoice(points, first, tuple(sorted(v.id for v in reused)))


def _last_attempts(steps: Iterable[Recorded]) -> dict[str, Recorded]:
    last: dict[str, Recorded] = {}
    for view in steps:
        if view.path not in last or view.attempt >= last[view.path].attempt:
            last[view.path] = view
    return last


def _failed_points(last: dict[str, Recorded]) -> tuple[str, ...]:
    """Failed steps holding no failed step (a for_each failed by its item: the item's step)."""
    failed = [p for p, v in last.items() if v.status is StepStatus.FAILED and not p.startswith(_AFTER)]
    return tuple(p for p in failed if not any(other != p and _inside(other, p) for other in failed))


def _inside(path: str, outer: str) -> bool:
    return path.startswith(outer + ".") or path.startswith(outer + "[")


def _static(path: str) -> str:
    return _INDEX.sub("", path)


def _places(plan: Plan) -> dict[str, tuple[str | None, int, int]]:
    """Each step path's parent (None at the top), which of its step lists, and where in it."""
    places: dict[str, tuple[str | None, int, int]] = {p: (None, 0, i) for i, p in enumerate(plan.main)}
    for node in plan.nodes.values():
        for s, sequence in enumerate(node.sequences):
            for i, child in enumerate(sequence):
                places[child] = (node.path, s, i)
    return places


def _trail(plan: Plan, places: dict[str, tuple[str | None, int, int]], path: str) -> Trail | None:
    """Where concrete ``path`` is, or None when it is no step of ``plan`` (or has the wrong indices)."""
    static = _static(path)
    if static not in places:
        return None
    indices = [int(i) for i in _INDEX.findall(path)]
    if plan.node(static).concrete_path(indices) != path:
        return None
    chain: list[str] = []
    at: str | None = static
    while at is not None:
        chain.append(at)
        at = places[at][0]
    chain.reverse()
    trail, consumed = [], iter(indices)
    for k, step in enumerate(chain):
        _, seq, pos = places[step]
        index = next(consumed) if k < len(chain) - 1 and plan.node(step).kind in _ITERATING else None
        trail.append((seq, pos, index))
    return tuple(trail)


def _reruns(plan: Plan, row: Trail, point: Trail) -> bool:
    """Whether the step at ``row`` runs again in a restart from ``point``: it is the point, holds
    it, is inside it, or comes after it (a later step of a sequence, a later loop iteration)."""
    for level, ((r_seq, r_pos, r_index), (p_seq, p_pos, p_index)) in enumerate(zip(row, point, strict=False)):
        if r_seq != p_seq:
            return False  # another branch of a parallel (or case of a switch)
        if r_pos != p_pos:
            return r_pos > p_pos
        if level == len(row) - 1 or level == len(point) - 1:
            return True
        if r_index != p_index:
            kind = _kind_at(plan, point, level)
            return kind == "loop" and r_index > p_index  # other for_each items are reused
    return True


def _kind_at(plan: Plan, trail: Trail, level: int) -> str:
    sequence = plan.main
    node = plan.node(sequence[trail[0][1]])
    for seq, pos, _ in trail[1:level + 1]:
        node = plan.node(node.sequences[seq][pos])
    return node.kind


def _check_point(plan: Plan, places: dict[str, tuple[str | None, int, int]], path: str,
                 last: dict[str, Recorded]) -> None:
    if path.startswith(_AFTER) or _trail(plan, places, path) is None:
        hint = ('; to restart from the failed steps, send {"from_failed": true}' if path == "failed"
                else _near(path, plan, last))
        raise ValidationError([Problem("from", f"'{path}' is not a step of {plan.flow_id} version "
                                               f"{plan.version}{hint}")])
    for mark in _INDEX.finditer(path):
        prefix = path[:mark.end()]
        if not any(_inside(recorded, prefix) for recorded in last):
            raise ValidationError([Problem("from", f"the run has no {prefix}: restart from a recorded item "
                                                   f"or iteration{_near(path, plan, last)}")])


def _near(path: str, plan: Plan, last: dict[str, Recorded]) -> str:
    """The close matches among the run's recorded paths and the plan's unindexed ones, or a list."""
    candidates = sorted({p for p in last if not p.startswith(_AFTER)}
                        | {p for p, node in plan.nodes.items() if "[" not in node.path_format
                           and not p.startswith(_AFTER)})
    close = difflib.get_close_matches(path, candidates, n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(f"'{c}'" for c in close)
    return "; restart from one of: " + ", ".join(candidates[:20]) + (" ..." if len(candidates) > 20 else "")
