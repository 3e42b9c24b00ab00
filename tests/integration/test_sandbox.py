"""Hostile steps against a real worker: each tries to reach past its own code, and fails, and
the worker goes on running the next run."""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
import uuid

import pytest

from orchestrator.cli.wiring import publisher_for
from orchestrator.definitions.parser import parse_flow
from orchestrator.services.runs import submit, wait_for_run
from orchestrator.store import views
from tests import services
from tests.conftest import QUEUE, Worker, migrate

pytestmark = pytest.mark.integration

ENV_SCAN = """
import os
def main(home: str):
    found, pids = [], []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        pids.append(int(pid))
        try:
            found.append(open(f'/proc/{pid}/environ', 'rb').read().decode('utf-8', 'replace'))
        except OSError:
            pass
    return {"uid": os.getuid(), "pids": sorted(pids), "environ": found, "mine": dict(os.environ),
            "home": sorted(os.listdir(home)) if os.path.isdir(home) else None}
"""


def flow(name: str, body: str) -> str:
    return f"id: sandbox/{name}\nsteps:\n{body}"


def code_step(step_id: str, code: str, extra: str = "") -> str:
    return f"  - id: {step_id}\n    python: {json.dumps(code)}\n{extra}"


def test_a_step_finds_no_credential_in_any_environment_and_is_not_root(run_flow) -> None:
    home = os.environ["MILLRACE_HOME"]
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "canary.txt"), "w") as planted:  # something there to be hidden
        planted.write("the worker's")
    assert os.listdir(home), "nothing in MILLRACE_HOME: the test could not fail"
    run = run_flow(flow("environ", code_step("scan", ENV_SCAN, f"    with: {{home: {json.dumps(home)}}}\n")))
    assert run.status == "succeeded", run.error
    seen = run.result
    assert seen["uid"] != 0 and seen["uid"] == pwd.getpwnam("millrace-step").pw_uid
    # its own PID namespace: the namespace's init, its server, the spare, itself; none of the worker's
    assert 1 in seen["pids"] and len(seen["pids"]) <= 4, seen["pids"]
    everything = json.dumps(seen)
    for name in ("MILLRACE_SECRET_KEY", "MILLRACE_DATABASE_URL", "MILLRACE_BROKER_URL", "guest:guest",
                 os.environ["MILLRACE_SECRET_KEY"]):
        assert name not in everything, name
    assert seen["mine"]["MILLRACE_RUN_ID"] == run.id  # its own variables are there
    assert not seen["home"]  # MILLRACE_HOME (environments, local files): empty, or not there at all


def test_with_a_password_on_the_database_what_a_step_can_find_does_not_connect() -> None:
    cluster = services.PrivatePostgres(password="s3cret-" + uuid.uuid4().hex[:8])
    try:
        url = cluster.create_database("millrace")
        migrate(url)
        queue = f"{QUEUE}_pg"
        worker = Worker([queue], concurrency=1, env={"MILLRACE_DATABASE_URL": url})
        try:
            from orchestrator.store.database import make_engine

            engine = make_engine(url)
            probe = (f"for u in postgres millrace-step root; do PGCONNECT_TIMEOUT=3 psql -w -h 127.0.0.1 "
                     f"-p {cluster.port} -U $u -d millrace -c 'select 1' >/dev/null 2>&1 && echo CONNECTED; done; "
                     "grep -rhos 'postgresql[+a-z]*://[^ ]*' /proc/*/environ /proc/*/cmdline || true; echo done")
            text = flow("pgprobe", f"  - id: probe\n    queue: {queue}\n    bash: {json.dumps(probe)}\n")
            run_id = submit(publisher_for(engine), parse_flow(text), text, {}, trigger="test")
            assert wait_for_run(engine, run_id, 120).value == "succeeded"
            run = views.get_run(engine, run_id)
            assert "CONNECTED" not in run.steps[0].logs and cluster.password not in run.steps[0].logs
            assert "postgresql" not in run.steps[0].logs  # no URL anywhere it can read
            engine.dispose()
        finally:
            worker.stop()
    finally:
        cluster.remove()


def test_network_none_reaches_nothing_and_host_reaches_the_broker(run_flow) -> None:
    connect = ("import socket\ndef main():\n    out = []\n"
               "    for host, port in (('127.0.0.1', 5672), ('1.1.1.1', 443)):\n"
               "        try:\n            socket.create_connection((host, port), timeout=2).close()\n"
               "            out.append('open')\n        except OSError as exc:\n"
               "            out.append(type(exc).__name__)\n    return out")
    closed = run_flow(flow("nonet", code_step("try", connect, "    network: none\n")))
    assert closed.status == "succeeded" and "open" not in closed.result, closed.result
    opened = run_flow(flow("hostnet", code_step("try", connect)))
    assert opened.result[0] == "open"  # the same step with the host's network: the test can fail
    whole = run_flow("id: sandbox/flownet\nnetwork: none\nsteps:\n" + code_step("try", connect))
    assert "open" not in whole.result  # said once for the flow


def test_a_fork_loop_stops_at_the_process_limit(run_flow) -> None:
    bomb = "import os, time\ndef main():\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n"
    run = run_flow(flow("forks", code_step("bomb", bomb, "    limits: {processes: 40}\n")), timeout=120)
    assert run.status == "failed" and "reached its process limit (40 processes)" in run.error, run.error
    assert run_flow(flow("after_forks", code_step("ok", "def main():\n    return 'fine'"))).result == "fine"


def test_a_memory_hog_fails_naming_the_memory_limit(run_flow) -> None:
    hog = "def main():\n    blocks = []\n    while True:\n        blocks.append(bytearray(50 << 20))\n"
    run = run_flow(flow("hog", code_step("hog", hog, "    limits: {memory: 200MiB}\n")), timeout=120)
    assert run.status == "failed" and "memory limit (200 MiB)" in run.error, run.error


def test_a_daemonized_grandchild_ends_with_its_step(run_flow) -> None:
    marker = f"mr-daemon-{uuid.uuid4().hex[:8]}"
    daemon = f"setsid sh -c 'exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 &\necho started"
    run = run_flow(flow("daemon", f"  - id: spawn\n    bash: {json.dumps(daemon)}\n"))
    assert run.status == "succeeded" and run.result == "started"
    deadline = time.monotonic() + 10
    while _processes_named(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_named(marker)


def test_its_private_temp_dir_is_gone_after_it_and_it_cannot_fill_more_than_its_disk(run_flow) -> None:
    write = "import os\ndef main():\n    path = os.path.join(os.environ['TMPDIR'], 'left')\n" \
            "    open(path, 'w').write('x')\n    return path"
    check = "import os\ndef main(path: str):\n    return [os.path.exists(path), os.listdir('/tmp')]"
    run = run_flow(flow("tmp", code_step("write", write) + code_step("check", check,
                                                                    '    with: {path: "${{ steps.write.result }}"}\n')))
    exists, others = run.result
    assert run.status == "succeeded" and exists is False
    assert os.path.basename(os.path.dirname(run.steps[0].result)) not in others
    fill = "def main():\n    with open('big', 'wb') as f:\n        for _ in range(300):\n" \
           "            f.write(b'x' * (1 << 20))\n"
    full = run_flow(flow("fill", code_step("fill", fill, "    limits: {disk: 100MiB}\n")))
    assert full.status == "failed" and "temporary space (100 MiB)" in full.error, full.error


def test_a_huge_stdout_is_cut_without_growing_the_worker(run_flow, worker) -> None:
    loud = "import sys\ndef main():\n    chunk = 'y' * (1 << 20)\n    for _ in range(100):\n" \
           "        sys.stdout.write(chunk)\n    return 'done'"
    before = _pool_rss_mib(worker)
    run = run_flow(flow("loud", code_step("loud", loud)))
    assert run.status == "succeeded" and run.result == "done"
    assert "bytes cut" in run.steps[0].logs and len(run.steps[0].logs) < 70_000
    assert _pool_rss_mib(worker) - before < 50


def test_an_oversized_result_fails_naming_the_result_limit(run_flow) -> None:
    big = "def main():\n    return 'z' * (3 << 20)"
    run = run_flow(flow("bigresult", code_step("big", big)))
    assert run.status == "failed" and "result limit" in run.error, run.error
    bash_big = "head -c 3000000 /dev/zero | tr '\\\\0' 'q'; echo"
    run = run_flow(flow("bigline", f"  - id: big\n    bash: {json.dumps(bash_big)}\n"))
    assert run.status == "failed" and "result limit" in run.error, run.error


def test_a_step_cannot_signal_anything_outside_its_sandbox(run_flow, worker) -> None:
    killer = "import os, signal\ndef main():\n    hit = []\n    for pid in range(2, 70000):\n" \
             "        if pid == os.getpid():\n            continue\n        try:\n" \
             "            os.kill(pid, signal.SIGKILL)\n            hit.append(pid)\n" \
             "        except OSError:\n            pass\n    return hit"
    run = run_flow(flow("killer", code_step("kill", killer)))
    # it may kill its own server (then it dies too), never the worker or anything outside
    if run.status == "succeeded":
        assert len(run.result) <= 3, run.result  # all it could reach: its sandbox's init, server and spare
    assert worker.proc.poll() is None
    assert run_flow(flow("after_killer", code_step("ok", "def main():\n    return 'alive'"))).result == "alive"


def test_limits_above_the_maximum_are_refused_at_save_with_the_path(engine) -> None:
    from orchestrator.errors import ValidationError
    from orchestrator.executors.base import Limits
    from orchestrator.services.saving import save_flow

    text = flow("toomuch", code_step("big", "def main():\n    return 1", "    limits: {memory: 64GiB}\n"))
    with pytest.raises(ValidationError) as refused:
        save_flow(engine, parse_flow(text), text, ceiling=Limits(memory_mb=8192))
    assert refused.value.problems[0].path == "steps[0].limits.memory"
    assert "MILLRACE_STEP_MEMORY_MB_MAX" in refused.value.problems[0].message


def _processes_named(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return found.stdout.split()


def _pool_rss_mib(worker: Worker) -> float:
    children = subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in [worker.proc.pid, *map(int, children)]:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def test_cpu_time_beyond_its_limit_ends_the_step(run_flow) -> None:
    spin = "def main():\n    while True:\n        pass\n"
    run = run_flow(flow("spin", code_step("spin", spin, "    limits: {cpu: 1s}\n    timeout: 60s\n")))
    assert run.status == "failed" and "CPU time limit (1 s)" in run.error, run.error


def test_a_worker_refuses_to_start_without_the_sandbox_and_says_what_to_install(tmp_path) -> None:
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap, no setpriv to be found
    started = subprocess.run([sys.executable, "-m", "celery", "-A", "tasks", "worker", "--queues", f"{QUEUE}_nosbx",
                              "--concurrency", "1", "--without-gossip", "--without-mingle"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode != 0
    assert "the step sandbox cannot start on this worker" in started.stderr + started.stdout
    assert "apt-get install" in started.stderr + started.stdout


def test_a_step_cannot_reach_into_its_server_or_the_next_step(run_flow) -> None:
    """Steps run as one user in one sandbox, one after another: none may plant a module for
    the next, read the server's memory, or keep one of the server's own descriptors."""
    plant = ("import glob, os\ndef main():\n    for path in ('/tmp/left_behind', '/dev/shm/left_behind'):\n"
             "        open(path, 'w').write('for the next step')\n"
             "    for folder in [os.getcwd(), *glob.glob('/tmp/step-*')]:\n"
             "        try:\n            open(os.path.join(folder, 'planted_mod.py'), 'w').write('X = 1')\n"
             "        except OSError:\n            pass\n"
             "    try:\n        open(f'/proc/{os.getppid()}/mem', 'rb').close()\n        mem = 'opened'\n"
             "    except OSError as exc:\n        mem = type(exc).__name__\n"
             "    links = [os.readlink(f'/proc/self/fd/{fd}') for fd in os.listdir('/proc/self/fd')\n"
             "             if os.path.exists(f'/proc/self/fd/{fd}')]\n"
             "    return {'mem': mem, 'epoll': [l for l in links if 'eventpoll' in l]}")
    use = ("import os\ndef main():\n"
           "    left = [p for p in ('/tmp/left_behind', '/dev/shm/left_behind') if os.path.exists(p)]\n"
           "    if left:\n        return left\n    try:\n        import planted_mod\n        return 'imported'\n"
           "    except ImportError:\n        return 'clean'")
    run = run_flow(flow("plant", code_step("plant", plant) + code_step("use", use)))
    assert run.status == "succeeded", run.error
    planted, used = (s.result for s in run.steps)
    assert planted["mem"] == "PermissionError" and planted["epoll"] == [] and used == "clean", (planted, used)


def test_a_step_that_stops_its_server_costs_one_timeout_at_most(run_flow) -> None:
    """Steps share the server's user, so a step can SIGSTOP its server and spare: the next
    step of that worker process then times out (a known limit, in docs/architecture.md),
    its sandbox is replaced, and the one after runs."""
    stop = ("import os, signal\ndef main():\n    for pid in os.listdir('/proc'):\n"
            "        if pid.isdigit() and int(pid) not in (1, os.getpid()):\n"
            "            try:\n                os.kill(int(pid), signal.SIGSTOP)\n"
            "            except OSError:\n                pass\n    return 'stopped them'")
    run_flow(flow("stopper", code_step("stop", stop, "    timeout: 3s\n")))
    fine = code_step("ok", "def main():\n    return 'fine'", "    timeout: 5s\n")
    results = [run_flow(flow(f"after_stopper_{i}", fine)) for i in range(4)]  # both pool processes
    assert results[-1].status == "succeeded" and sum(r.status == "failed" for r in results) <= 2, [
        (r.status, r.error) for r in results]
