"""Settings read from MILLRACE_* once: a bad value stops the process with a message naming it."""
from __future__ import annotations

import pytest

from config.settings import load_settings


def test_a_batch_time_is_seconds_capped_below_the_time_limit_margin() -> None:
    assert load_settings({}).batch_seconds == 5.0
    assert load_settings({"MILLRACE_STEP_BATCH_S": "0"}).batch_seconds == 0.0
    assert load_settings({"MILLRACE_STEP_BATCH_S": "0.25"}).batch_seconds == 0.25
    assert load_settings({"MILLRACE_STEP_BATCH_S": "3600"}).batch_seconds == 50.0


@pytest.mark.parametrize(("name", "value", "says"), [
    ("MILLRACE_STEP_BATCH_S", "soon", "MILLRACE_STEP_BATCH_S must be a number, got 'soon'"),
    ("MILLRACE_STEP_BATCH_S", "-1", "MILLRACE_STEP_BATCH_S must be a number of seconds >= 0, got '-1'"),
    ("MILLRACE_STEP_BATCH_S", "nan", "MILLRACE_STEP_BATCH_S must be a number of seconds >= 0, got 'nan'"),
    ("MILLRACE_TASK_TIME_LIMIT", "25m", "MILLRACE_TASK_TIME_LIMIT must be an integer, got '25m'"),
])
def test_a_bad_value_names_the_setting(name: str, value: str, says: str) -> None:
    with pytest.raises(SystemExit, match=says.replace(".", r"\.")):
        load_settings({name: value})
