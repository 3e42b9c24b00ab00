"""The command line as a user drives it: subprocesses on the real services, asserting what
they print and how they exit."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests

from orchestrator.store.access import Role, create_token
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "orchestrator.cli"]


def millrace(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=ROOT, env={**os.environ, **(env or {})}, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def _flow(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_run_with_no_worker_prints_the_run_id_and_the_hint_then_ctrl_c_detaches(engine, tmp_path) -> None:
    flow = _flow(tmp_path, "idle", f"id: cli/idle_{uuid.uuid4().hex[:6]}\nsteps:\n  - {{id: a, bash: echo}}\n")
    env = {**os.environ, "MILLRACE_DEFAULT_QUEUE": f"nobody_{uuid.uuid4().hex[:8]}"}  # no worker consumes it
    proc = subprocess.Popen([*CLI, "run", str(flow)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = proc.stderr.readline()  # the run id, at once
    began = time.monotonic()
    while "no worker has taken" not in seen:
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    assert time.monotonic() - began < 5  # the hint within 5 s of the run's start
    run_id = seen.split()[1]
    assert seen.startswith(f"run {run_id} of cli/idle_") and f"no worker has taken run {run_id}" in seen
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"detached: run {run_id} goes on" in err and f"millrace runs cancel {run_id}" in err
    assert "Traceback" not in err
    shown = millrace("runs", "show", run_id, "-o", "json")
    assert json.loads(shown.stdout)["status"] == "queued"  # it goes on: still waiting for a worker
    assert millrace("runs", "cancel", run_id).stdout.strip() == "cancelled"


def test_exit_codes_say_how_a_run_ended(engine, worker, tmp_path) -> None:
    tag = uuid.uuid4().hex[:6]
    ok = millrace("run", str(_flow(tmp_path, "ok", f"id: cli/ok_{tag}\nsteps:\n  - {{id: a, bash: echo hi}}\n")))
    assert ok.returncode == 0 and ok.stdout == "hi\n"  # a string result as itself, not JSON-quoted
    assert "a: succeeded in" in ok.stderr  # progress, step by step
    failed = millrace("run", str(_flow(tmp_path, "bad", f"id: cli/bad_{tag}\nsteps:\n  - {{id: a, bash: exit 3}}\n")))
    assert failed.returncode == 1 and "failed" in failed.stderr
    shown = millrace("runs", "show", failed.stderr.split()[1])  # a failed step's run reads like any other
    assert shown.returncode == 0 and "failed" in shown.stdout and "Traceback" not in shown.stderr
    slow = _flow(tmp_path, "slow", f"id: cli/slow_{tag}\nsteps:\n  - {{id: a, bash: sleep 30}}\n")
    timed = millrace("run", str(slow), "--timeout", "1")
    assert timed.returncode == 3 and "still running after 1 s" in timed.stderr
    run_id = timed.stderr.split()[1]
    assert millrace("runs", "cancel", run_id).returncode == 0
    waiting = _flow(tmp_path, "gate", f"id: cli/gate_{tag}\nsteps:\n  - {{id: g, approval: {{}}}}\n")
    detached = millrace("run", str(waiting), "--detach")
    gate_run = detached.stdout.strip()
    assert detached.returncode == 0 and len(gate_run) == 36
    assert millrace("runs", "cancel", gate_run).returncode == 0
    followed = millrace("runs", "show", gate_run)
    assert followed.returncode == 0 and "cancelled" in followed.stdout


def test_definitions_through_the_cli_and_remote_roles(engine, worker, tmp_path) -> None:
    tag = uuid.uuid4().hex[:6]
    flow = _flow(tmp_path, "hello", f"id: cli/hello_{tag}\ninputs:\n  who: {{type: string, default: you}}\n"
                                     "steps:\n  - id: greet\n    script: cli_" + tag + "/greet\n"
                                     "    with: {who: \"${{ inputs.who }}\"}\n")
    script = tmp_path / "greet.py"
    script.write_text('def main(who: str) -> str:\n    print("greeting", who)\n    return f"hello {who}"\n')
    assert millrace("scripts", "save", f"cli_{tag}/greet", str(script)).stdout.startswith(f"cli_{tag}/greet@1")
    assert millrace("flows", "save", str(flow)).stdout.startswith(f"cli/hello_{tag}@1")
    listed = json.loads(millrace("flows", "list", "--prefix", f"cli/hello_{tag}", "-o", "json").stdout)
    assert [f["id"] for f in listed] == [f"cli/hello_{tag}"]
    assert millrace("flows", "show", f"cli/hello_{tag}").stdout == flow.read_text().rstrip("\n") + "\n"
    ran = millrace("run", f"cli/hello_{tag}", "-i", "who=ada", "--json")  # a saved flow, by its id
    run = json.loads(ran.stdout)
    assert ran.returncode == 0 and run["result"] == "hello ada" and set(run) >= {"id", "created_at", "steps"}
    logs = millrace("runs", "logs", run["id"], "greet")
    assert logs.returncode == 0 and "greeting ada" in logs.stdout
    table = millrace("runs", "list", "--flow", f"cli/hello_{tag}", "--trigger", "cli")  # started here: trigger cli
    assert run["id"] in table.stdout and "succeeded" in table.stdout
    both = millrace("run", str(flow), "--local", "--detach")
    assert both.returncode == 2 and "--detach would stop the worker" in both.stderr
    # variables and secrets: a secret's value from stdin, never shown
    assert millrace("vars", "set", f"cli_{tag}_n", "3").returncode == 0
    assert millrace("secrets", "set", f"cli_{tag}_pw", stdin="hunter2\n").returncode == 0
    shown = millrace("vars", "list", "-o", "json").stdout
    values = {v["name"]: v.get("value") for v in json.loads(shown)}
    assert values[f"cli_{tag}_n"] == 3 and values[f"cli_{tag}_pw"] == "(secret)" and "hunter2" not in shown
    key = millrace("secret-key").stdout.strip()
    assert len(key) == 44 and key.endswith("=")
    # remote: the same commands through a served API, with a token's role
    port = free_port()
    from tests.conftest import Served

    served = Served("api-cli", ["api", "--port", str(port), "--workers", "1"], "/readyz", port=port)
    try:
        viewer = {"MILLRACE_API_URL": served.base, "MILLRACE_TOKEN": create_token(engine, f"v-{tag}", Role.VIEWER)}
        remote = millrace("flows", "list", "--prefix", f"cli/hello_{tag}", env=viewer)
        assert remote.returncode == 0 and f"cli/hello_{tag}" in remote.stdout
        refused = millrace("flows", "delete", f"cli/hello_{tag}", env=viewer)
        assert refused.returncode == 2 and "refused (403)" in refused.stderr and "may not define" in refused.stderr
    finally:
        served.stop()
    assert millrace("flows", "delete", f"cli/hello_{tag}").returncode == 0


def test_a_refused_file_names_the_file_and_line(engine, tmp_path) -> None:
    flow = _flow(tmp_path, "broken", "id: cli/broken\nsteps:\n  - id: a\n    bash: echo\n    retry: 3\n")
    refused = millrace("flows", "save", str(flow))
    assert refused.returncode == 2
    assert f"{flow}:5: steps[0].retry: expected a mapping, e.g. retry: {{attempts: 3" in refused.stderr


def test_sync_saves_what_changed_and_a_second_sync_changes_nothing(engine, tmp_path) -> None:
    tag = uuid.uuid4().hex[:6]
    (tmp_path / f"sync_{tag}").mkdir()
    (tmp_path / f"sync_{tag}" / "add.py").write_text("def main(a: int, b: int) -> int:\n    return a + b\n")
    (tmp_path / "flow.yaml").write_text(f"id: sync/{tag}\nsteps:\n  - id: s\n    script: sync_{tag}/add\n"
                                        "    with: {a: 1, b: 2}\n")
    (tmp_path / "parent.yaml").write_text(f"id: sync/{tag}_parent\nsteps:\n  - {{id: call, flow: flow.yaml}}\n")
    dry = millrace("sync", str(tmp_path), "--dry-run")
    assert dry.returncode == 0 and f"would create   script sync_{tag}/add" in dry.stdout
    assert f"would create   flow sync/{tag}" in dry.stdout and "3 change(s) would be made" in dry.stderr
    assert millrace("flows", "show", f"sync/{tag}").returncode == 2  # the dry run saved nothing
    first = millrace("sync", str(tmp_path))
    assert first.returncode == 0 and "created        flow" in first.stdout
    again = millrace("sync", str(tmp_path))
    assert "0 change(s)" in again.stderr and "created" not in again.stdout, again.stdout  # subflow files too
    (tmp_path / "flow.yaml").write_text((tmp_path / "flow.yaml").read_text().replace("a: 1", "a: 5"))
    assert f"updated        flow sync/{tag}" in millrace("sync", str(tmp_path)).stdout


def test_up_serves_the_api_and_an_example_then_stops_on_ctrl_c(tmp_path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLRACE_")}
    flower_port = free_port()
    env.update({"MILLRACE_HOME": str(home), "MILLRACE_SANDBOX": "off", "MILLRACE_API_PORT": str(port),
                "MILLRACE_FLOWER_PORT": str(flower_port)})
    proc = subprocess.Popen([*CLI, "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        seen = ""
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen[-3000:]
            seen += proc.stderr.readline()
        token = next(line.split()[-1] for line in seen.splitlines() if "admin token mr_" in line)
        assert (home / "credentials.json").stat().st_mode & 0o777 == 0o600
        base = f"http://127.0.0.1:{port}"
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        auth = {"Authorization": f"Bearer {token}"}
        started = requests.post(f"{base}/api/v1/flows/examples/hello/runs?wait=60", json={"inputs": {"name": "up"}},
                                headers=auth, timeout=90)
        assert started.status_code == 200 and started.json()["status"] == "succeeded", started.text
        assert started.json()["result"]["greeting"] == "hello up"
        # the scheduler runs too (local mode: a file lock elects it): a schedule of every second fires
        made = requests.post(f"{base}/api/v1/schedules", headers=auth, timeout=10, json={
            "flow": "examples/hello", "cron": "* * * * * *", "inputs": {"name": "tick"}, "catchup": "none"})
        assert made.status_code == 201, made.text
        deadline = time.monotonic() + 30
        while not requests.get(f"{base}/api/v1/runs?trigger=schedule&status=succeeded", headers=auth,
                               timeout=10).json()["items"]:
            assert time.monotonic() < deadline, "no scheduled run"
            time.sleep(0.5)
        requests.patch(f"{base}/api/v1/schedules/{made.json()['id']}", json={"enabled": False}, headers=auth,
                       timeout=10)
        login = tuple(json.loads((home / "credentials.json").read_text())["flower"].split(":", 1))
        tasks = requests.get(f"http://127.0.0.1:{flower_port}/api/tasks?limit=5", auth=login, timeout=10)
        assert tasks.status_code == 200 and tasks.json()  # Flower sees the workers' tasks
        # run --local uses the worker up runs instead of starting one
        local = subprocess.run([*CLI, "run", "--local", str(ROOT / "examples" / "hello.yaml"), "-i", "name=again"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # up's env exactly
        assert local.returncode == 0 and "using the worker `millrace up` runs" in local.stderr, local.stderr
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        assert proc.returncode == 0
        time.sleep(0.5)
        left = subprocess.run(["pgrep", "-f", f"MILLRACE_HOME={home}|{home}"], capture_output=True, text=True)
        survivors = [pid for pid in left.stdout.split() if _environ_has(int(pid), str(home))]
        assert survivors == [], survivors  # no process of it is left
        assert not (home / "up.json").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    again = subprocess.Popen([*CLI, "up"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        seen = ""
        while "Ctrl-C stops everything" not in seen:
            line = again.stderr.readline()
            assert line, seen
            seen += line
        assert "mr_" not in seen and str(home / "credentials.json") in seen  # the token once, then where it is
    finally:
        os.killpg(again.pid, signal.SIGINT)
        again.wait(timeout=60)


def _environ_has(pid: int, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return text.encode() in environ.read()
    except OSError:
        return False


def test_the_readmes_flow_runs_as_printed(engine, worker, tmp_path) -> None:
    import re

    [flow] = [block for block in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
              if block.startswith("id: ")]
    path = tmp_path / "readme.yaml"
    path.write_text(flow)
    ran = millrace("run", str(path), "--json")
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "succeeded" and run["result"] == ["square 0 is 0", "square 1 is 1", "square 2 is 4",
                                                              "square 3 is 9"]


def test_bench_refuses_when_no_worker_consumes_its_queue(engine) -> None:
    began = time.monotonic()
    nobody = {"MILLRACE_DEFAULT_QUEUE": f"nobody_{uuid.uuid4().hex[:8]}"}
    refused = millrace("bench", "--scenario", "light40", env=nobody)
    assert refused.returncode != 0 and "no worker consumes the queue" in refused.stderr
    assert "--workers N" in refused.stderr and time.monotonic() - began < 30  # said at once, not after a hang
