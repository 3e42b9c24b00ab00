"""Step code runs isolated: whatever one step does to its process, the next one is fine."""
from __future__ import annotations

import os
import signal
import time

import pytest

from orchestrator.executors.base import Execution, Executor, Limits, StepCall
from orchestrator.executors.bash import BashExecutor
from orchestrator.executors.python import PythonExecutor


@pytest.fixture(scope="module")
def python():
    executor = PythonExecutor(limits=Limits(log_bytes=4096))
    yield executor
    executor.close()


bash = BashExecutor(limits=Limits(log_bytes=4096))


def run(executor: Executor, code: str, args: dict, **given) -> Execution:
    return executor.run(StepCall(code, args, **given))


def test_main_gets_its_arguments_by_name_and_returns_the_result(python) -> None:
    done = run(python, "def main(a: int, b: float, *, c: str = '!') -> list:\n    return [a + b, c]", {"a": 1, "b": 2})
    assert done.ok and done.result == [3.0, "!"]


@pytest.mark.parametrize(("args", "error"), [
    ({}, "main() is missing argument 'x'"),
    ({"x": 1, "y": 2}, "main() takes no argument 'y'"),
    ({"x": "1"}, "argument 'x': expected int, got str"),
    ({"x": True}, "argument 'x': expected int, got bool"),
])
def test_arguments_that_do_not_fit_main_are_refused(python, args, error) -> None:
    done = run(python, "def main(x: int):\n    return x", args)
    assert not done.ok and done.error == error


def test_optional_and_generic_hints_are_checked_at_the_outer_type(python) -> None:
    code = "def main(xs: list[int], label: str | None = None):\n    return len(xs)"
    assert run(python, code, {"xs": [1, 2], "label": None}).result == 2
    assert run(python, code, {"xs": {"a": 1}}).error == "argument 'xs': expected list, got dict"


def test_an_exception_is_the_error_and_its_traceback_is_in_the_logs(python) -> None:
    done = run(python, "def main():\n    print('before')\n    raise KeyError('gone')", {})
    assert not done.ok and done.error == "KeyError: 'gone'"
    assert "before" in done.logs and 'File "<step>", line 3, in main' in done.logs


def test_output_of_subprocesses_the_step_starts_is_captured(python) -> None:
    done = run(python, "import os\ndef main():\n    os.system('echo from-a-child')\n    return 1", {})
    assert "from-a-child" in done.logs


@pytest.mark.parametrize(("code", "error"), [
    ("import sys\ndef main():\n    sys.exit(3)", "sys.exit(3) called before main() returned"),
    ("import os\ndef main():\n    os._exit(1)", "process exited with code 1 before returning"),
    ("import ctypes\ndef main():\n    ctypes.string_at(0)", "killed by signal SIGSEGV"),
    ("def main():\n    return {1, 2}", "result is not JSON serializable"),
])
def test_a_dying_step_fails_alone_and_the_next_step_runs(python, code, error) -> None:
    done = run(python, code, {})
    assert not done.ok and error in done.error
    assert run(python, "def main():\n    return 'still fine'", {}).result == "still fine"


def test_state_changed_by_one_step_is_not_seen_by_the_next(python) -> None:
    assert run(python, "import json\ndef main():\n    json.dumps = None\n    return 1", {}).result == 1
    assert run(python, "import json\ndef main():\n    return json.dumps([1])", {}).result == "[1]"
    run(python, "import os\ndef main():\n    os.environ['LEAK'] = 'x'", {})
    assert run(python, "import os\ndef main():\n    return os.environ.get('LEAK')", {}).result is None


def test_timeout_kills_the_step_and_everything_it_started(python) -> None:
    started = time.monotonic()
    done = run(python,
        "import subprocess\ndef main():\n    p = subprocess.Popen(['sleep', '60'])\n"
        "    print(p.pid, flush=True)\n    while True:\n        pass", {}, timeout=1)
    assert done.timed_out and done.error == "timed out after 1s"
    assert time.monotonic() - started < 5
    grandchild = int(done.logs.split()[0])
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_a_killed_fork_server_is_replaced_on_the_next_run(python) -> None:
    run(python, "def main():\n    return 1", {})
    server = python.servers.get(None, Limits().disk_mb)._proc
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    assert run(python, "def main():\n    return 2", {}).result == 2


def test_the_step_sees_only_the_environment_it_is_given(python) -> None:
    os.environ["MILLRACE_DATABASE_URL_PROBE"] = "secret"
    done = run(python, "import os\ndef main():\n    return [os.environ.get('A'), "
                      "os.environ.get('MILLRACE_DATABASE_URL_PROBE')]", {}, env={"A": "1"})
    assert done.result == ["1", None]


def test_logs_are_capped_keeping_head_and_tail(python) -> None:
    done = run(python, "def main():\n    print('start')\n    print('x' * 100000)\n    print('end')", {})
    assert len(done.logs) < 4200 and done.logs.startswith("start") and done.logs.rstrip().endswith("end")
    assert "bytes cut" in done.logs


def test_bash_result_is_the_last_stdout_line_parsed_as_json_when_it_is_json() -> None:
    assert run(bash, 'echo noise >&2\necho \'{"a": [1, 2]}\'', {}).result == {"a": [1, 2]}
    assert run(bash, "echo one\necho two words", {}).result == "two words"
    assert run(bash, "true", {}).result is None


def test_bash_gets_with_values_as_environment_variables() -> None:
    done = run(bash, 'echo "$NAME $COUNT $ITEMS"', {"NAME": "ada", "COUNT": 3, "ITEMS": [1, 2]})
    assert done.result == "ada 3 [1, 2]"


def test_bash_failure_names_the_exit_code_and_last_error_line() -> None:
    done = run(bash, "echo working\ncat /nonexistent-file", {})
    assert not done.ok and done.error.startswith("exit code 1: cat: /nonexistent-file")
    assert "working" in done.logs


def test_bash_timeout_kills_the_process_group() -> None:
    started = time.monotonic()
    done = run(bash, "sleep 30 & echo $!\nwait", {}, timeout=1)
    assert done.timed_out and time.monotonic() - started < 5


def test_bash_refuses_a_name_that_cannot_be_a_variable() -> None:
    done = run(bash, "echo", {"not-valid": 1})
    assert not done.ok and "'not-valid' cannot be an environment variable name" in done.error


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, awaiting its reaper
    except FileNotFoundError:
        return False


def test_a_result_json_cannot_keep_is_refused_or_kept_as_text(python) -> None:
    done = run(python, "def main():\n    return float('nan')", {})
    assert not done.ok and "not JSON serializable" in done.error
    assert run(bash, "echo NaN", {}).result == "NaN" and run(bash, "echo '[1, Infinity]'", {}).result == "[1, Infinity]"


def test_a_step_without_main_finds_none_left_by_an_earlier_step_or_its_spare(python) -> None:
    assert run(python, "def main():\n    return 1", {}).result == 1
    done = run(python, "x = 1", {})
    assert not done.ok and done.error == "the step defines no main() function"


def test_many_short_steps_back_to_back_each_report_their_own_result(python) -> None:
    # A step that ends before its server hears it began (its spare both taken and reaped in one
    # wake-up) once left a stray spare that broke a later step's connection: about 1 in 400.
    code = "def main(x: int) -> int:\n    return x + 1"
    failed = [(i, done.error) for i in range(1500) if not (done := run(python, code, {"x": i})).ok
              or done.result != i + 1]
    assert failed == []
