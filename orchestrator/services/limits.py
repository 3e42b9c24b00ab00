"""What a step may use: the worker's defaults, what its flow and the step ask, and the
operator's maxima (``MILLRACE_STEP_*``, ``MILLRACE_STEP_*_MAX``). A flow that asks above a
maximum is refused when it is saved; a worker also holds every step to its own maxima."""
from __future__ import annotations

import dataclasses

from config.settings import Settings
from orchestrator.definitions.flow import Flow
from orchestrator.definitions.steps import LoopStep, SqlStep, StepBase, StepLimits
from orchestrator.errors import Problem, ValidationError, join_path
from orchestrator.executors.base import Limits

# flow field -> (Limits field, the setting that caps it)
_FIELDS = {"memory": ("memory_mb", "MILLRACE_STEP_MEMORY_MB_MAX", "MiB"),
           "processes": ("processes", "MILLRACE_STEP_PROCESSES_MAX", "processes"),
           "cpu": ("cpu_s", "MILLRACE_STEP_CPU_S_MAX", "s"),
           "disk": ("disk_mb", "MILLRACE_STEP_DISK_MB_MAX", "MiB")}


def defaults(settings: Settings) -> Limits:
    return Limits(memory_mb=settings.step_memory_mb, processes=settings.step_processes,
                  cpu_s=settings.step_cpu_s or None, disk_mb=settings.step_disk_mb,
                  log_bytes=settings.log_limit, result_bytes=settings.result_limit)


def maxima(settings: Settings) -> Limits:
    """The most a flow may ask for (``cpu_s`` None: any)."""
    return Limits(memory_mb=settings.step_memory_mb_max, processes=settings.step_processes_max,
                  cpu_s=settings.step_cpu_s_max or None, disk_mb=settings.step_disk_mb_max,
                  log_bytes=settings.log_limit, result_bytes=settings.result_limit)


def check_limits(flow: Flow, ceiling: Limits) -> None:
    """Refuse limits above the operator's maxima, naming each place."""
    asked = [(("limits",), flow.limits)] + [((*path, "limits"), step.limits) for step, path in flow.walk()]
    problems = []
    for where, limits in asked:
        if limits is None:
            continue
        for name, (field, setting, unit) in _FIELDS.items():
            value, most = getattr(limits, name), getattr(ceiling, field)
            if value is not None and most is not None and value > most:
                problems.append(Problem(join_path(*where, name), f"{value:g} {unit} is above this installation's "
                                                                 f"maximum, {most:g} {unit} ({setting})"))
    if problems:
        raise ValidationError(problems)


def limits_for(base: Limits, ceiling: Limits, flow: Flow, step: StepBase) -> Limits:
    """A step's limits: the flow's and its own over ``base``, none above ``ceiling``."""
    if flow.limits is None and step.limits is None:
        return base
    changes: dict[str, int | float | None] = {}
    for asked in (flow.limits, step.limits):
        for name, (field, _, _) in _FIELDS.items():
            value = getattr(asked, name) if isinstance(asked, StepLimits) else None
            if value is not None:
                most = getattr(ceiling, field)
                changes[field] = value if most is None else min(value, most)
    if "cpu_s" in changes and changes["cpu_s"] is not None:
        changes["cpu_s"] = max(int(changes["cpu_s"]), 1)
    return dataclasses.replace(base, **changes)


def check_sql_databases(flow: Flow, own_database: bool) -> None:
    """Refuse ``sql:`` steps with no ``database:`` when this installation keeps its own
    database from steps (MILLRACE_SQL_OWN_DATABASE off): found at save, not at run time."""
    if own_database:
        return
    problems = [Problem(join_path(*path, "database"), "an sql step needs `database:`, the name of a secret holding "
                        "a PostgreSQL URL (this installation keeps its own database from steps: "
                        "MILLRACE_SQL_OWN_DATABASE is off)")
                for step, path in flow.walk() if isinstance(step, SqlStep) and step.database is None]
    if problems:
        raise ValidationError(problems)


def check_loop_iterations(flow: Flow, most: int) -> None:
    """Refuse a ``loop:`` step that may iterate more than the operator allows
    (MILLRACE_MAX_LOOP_ITERATIONS): an unbounded loop is refused at save, not stopped at run time."""
    problems = [Problem(join_path(*path, "loop", "max_iterations"),
                        f"at most {most} iterations here (MILLRACE_MAX_LOOP_ITERATIONS); this loop asks for "
                        f"{step.loop.max_iterations}")
                for step, path in flow.walk() if isinstance(step, LoopStep) and step.loop.max_iterations > most]
    if problems:
        raise ValidationError(problems)
