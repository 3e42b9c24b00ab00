"""What follows a failed step, decided without a broker or a database."""
from __future__ import annotations

import pytest

from orchestrator.definitions.steps import Retry
from orchestrator.execution.lifecycle import CarryOn, FailRun, Phase, RetryStep, after_failure


def decide(attempt: int = 1, retry: Retry | None = None, continue_on_error: bool = False,
           retryable: bool = True, phase: Phase = Phase.MAIN, has_on_failure: bool = False):
    return after_failure(path="load", error="exit code 3", attempt=attempt, retry=retry,
                         continue_on_error=continue_on_error, retryable=retryable, phase=phase,
                         has_on_failure=has_on_failure)


def test_a_step_with_attempts_left_is_retried_after_its_delay():
    assert decide(attempt=1, retry=Retry(attempts=3, delay=2)) == RetryStep(countdown=2, max_retries=3)


def test_exponential_backoff_doubles_the_delay_up_to_its_cap():
    retry = Retry(attempts=6, delay=2, backoff="exponential", max_delay=5)
    assert [decide(attempt=n, retry=retry).countdown for n in (1, 2, 3)] == [2, 4, 5]


def test_the_last_attempt_fails_the_run_naming_the_step():
    decision = decide(attempt=3, retry=Retry(attempts=3))
    assert decision == FailRun("step load failed: exit code 3", on_failure=False)


def test_a_failure_retrying_cannot_cure_is_not_retried():
    assert isinstance(decide(attempt=1, retry=Retry(attempts=3), retryable=False), FailRun)


def test_continue_on_error_records_the_failure_and_goes_on():
    assert decide(continue_on_error=True) == CarryOn("exit code 3")


def test_continue_on_error_comes_after_the_retries():
    assert isinstance(decide(attempt=1, retry=Retry(attempts=2), continue_on_error=True), RetryStep)
    assert decide(attempt=2, retry=Retry(attempts=2), continue_on_error=True) == CarryOn("exit code 3")


def test_a_main_step_failing_in_a_flow_with_on_failure_sends_its_on_failure_steps():
    assert decide(has_on_failure=True) == FailRun("step load failed: exit code 3", on_failure=True)


def test_a_failing_on_failure_step_ends_the_run_without_running_on_failure_again():
    assert decide(phase=Phase.ON_FAILURE, has_on_failure=True).on_failure is False


@pytest.mark.parametrize("attempt", [1, 2])
def test_a_replayed_failure_is_decided_as_the_first_delivery_would_have(attempt):
    """A redelivered message finds its attempt failed: the same inputs give the same decision,
    so whichever delivery acts, the run sees one outcome."""
    retry = Retry(attempts=2, delay=1)
    first = decide(attempt=attempt, retry=retry)
    again = decide(attempt=attempt, retry=retry)
    assert first == again
    assert isinstance(first, RetryStep if attempt == 1 else FailRun)
