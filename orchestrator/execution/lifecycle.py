"""A run's life cycle, pure: the statuses of runs and steps, the phases of a run, and what
becomes of a step that failed (the failure policy).

Runs go ``queued -> running [-> suspended -> running] -> succeeded | failed | cancelled``.
A run whose main steps failed and that has ``on_failure`` steps stays ``running`` with its
error recorded while they run (its ``on_failure`` phase); their end marks it failed. A run
with ``finally`` steps stays ``running`` while they run after all that (its ``finally``
phase), however it went (succeeded, failed, cancelled): the run's ``ending`` says how, and
their end gives the run that status (failed instead of succeeded when one of them fails).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from orchestrator.definitions.steps import Retry


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUSPENDED = "suspended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


class StepStatus(enum.StrEnum):
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def finished(self) -> bool:
        return self in (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED)


class Phase(enum.StrEnum):
    """Which steps of a run a task belongs to."""

    MAIN = "main"
    ON_FAILURE = "on_failure"
    FINALLY = "finally"


FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
# A run that has started and not ended: its steps may run, its concurrency slot is taken.
ACTIVE = (RunStatus.RUNNING.value, RunStatus.SUSPENDED.value)
# Not ended yet, started or not: what a cancel ends and what an overlap policy waits for.
UNFINISHED = (RunStatus.QUEUED.value, *ACTIVE)
# A step attempt that has no outcome yet: only such a row takes one.
OPEN_STEP = (StepStatus.RUNNING.value, StepStatus.WAITING.value)
# Outcomes a restart reuses.
REUSABLE_STEP = (StepStatus.SUCCEEDED.value, StepStatus.SKIPPED.value)


# --- the failure policy --------------------------------------------------------------------

@dataclass(frozen=True)
class RetryStep:
    """Run the step again after ``countdown`` seconds (its task is re-sent)."""

    countdown: float
    max_retries: int


@dataclass(frozen=True)
class CarryOn:
    """Record the step failed and go on with the next (``continue_on_error``)."""

    error: str


@dataclass(frozen=True)
class FailRun:
    """The run fails with ``error``. ``on_failure``: its on_failure steps run first (only a
    main-phase failure of a flow that has them); otherwise the run ends failed now, or after
    its finally steps."""

    error: str
    on_failure: bool


Decision = RetryStep | CarryOn | FailRun


def after_failure(*, path: str, error: str, attempt: int, retry: Retry | None,
                  continue_on_error: bool, retryable: bool, phase: Phase,
                  has_on_failure: bool) -> Decision:
    """What follows attempt number ``attempt`` of step ``path`` failing with ``error``.

    ``retryable`` is False for failures running again cannot cure (a bad ``with:`` or
    ``if:`` expression, a missing script). A replayed failure (a redelivered message whose
    attempt had failed) is decided the same way: the delivery that recorded it may have
    died before acting on it.
    """
    if retryable and retry is not None and attempt < retry.attempts:
        return RetryStep(retry.delay_before(attempt + 1), retry.attempts)
    if continue_on_error:
        return CarryOn(error)
    return FailRun(f"step {path} failed: {error}", on_failure=phase is Phase.MAIN and has_on_failure)

