"""One story over real HTTP, against `millrace api` (gunicorn) on the test database and
broker: a token from the CLI, tokens from the API, a script, flows, a run with wait, a run
polled to its end, logs, a cancel, an approval, a restart from a step, and the audit trail
of all of it."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
import requests

from tests.conftest import LOGS, ROOT, Served

pytestmark = pytest.mark.integration

CALC = """id: life/calc
inputs:
  n: {type: integer}
steps:
  - id: double
    script: life/double
    with: {n: "${{ inputs.n }}"}
  - id: check
    python: |
      def main(value: int, allowed: bool) -> int:
          if not allowed:
              raise RuntimeError("not allowed yet")
          return value + 1
    with: {value: "${{ steps.double.result }}", allowed: "${{ vars.life_allowed }}"}
"""
SLOW = "id: life/slow\nsteps:\n  - {id: nap, bash: sleep 120}\n  - {id: never, bash: echo never}\n"
GATED = "id: life/gated\nsteps:\n  - {id: gate, approval: {}}\n  - {id: after, bash: echo shipped}\n"
DOUBLE = 'def main(n: int) -> int:\n    print("doubling", n)\n    return n * 2\n'


@pytest.fixture(scope="module")
def server(database_url, worker):
    from tests.conftest import free_port

    port = free_port()
    served = Served("api-life", ["api", "--port", str(port), "--workers", "2"], "/readyz", port=port)
    yield served.base
    served.stop()


def cli_token(role: str, name: str) -> str:
    made = subprocess.run([sys.executable, "-m", "orchestrator.cli", "tokens", "create", "--role", role,
                           "--name", name], cwd=ROOT, capture_output=True, text=True, check=True)
    return made.stdout.strip().splitlines()[-1]


class Client:
    def __init__(self, base: str, token: str):
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def __call__(self, method: str, path: str, expect: int, **kwargs) -> dict:
        response = self.session.request(method, self.base + path, timeout=60, **kwargs)
        assert response.status_code == expect, (method, path, response.status_code, response.text[:1000])
        assert "Traceback" not in response.text
        return response.json() if response.content else {}

    def until(self, run_id: str, *statuses: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while (run := self("GET", f"/api/v1/runs/{run_id}", 200))["status"] not in statuses:
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
        return run


def test_the_whole_life_cycle_over_http(server) -> None:
    admin = Client(server, cli_token("admin", "life-admin"))
    made = {role: admin("POST", "/api/v1/tokens", 201, json={"name": f"life-{role}", "role": role})["token"]
            for role in ("developer", "operator")}
    dev, ops = Client(server, made["developer"]), Client(server, made["operator"])

    # definitions: a script, a variable, three flows
    script = dev("PUT", "/api/v1/scripts/life/double", 201, json={"language": "python", "code": DOUBLE})
    assert script["input_schema"]["properties"] == {"n": {"type": "integer"}}
    dev("PUT", "/api/v1/variables/life_allowed", 204, json={"value": False})
    for text in (CALC, SLOW, GATED):
        flow_id = text.split("\n", 1)[0].removeprefix("id: ")
        dev("PUT", f"/api/v1/flows/{flow_id}", 201, data=text, headers={"Content-Type": "application/yaml"})

    # run with wait: it fails at `check` (not allowed yet), and says so in the answer
    failed = ops("POST", "/api/v1/flows/life/calc/runs?wait=60", 200, json={"inputs": {"n": 21}})
    assert failed["status"] == "failed" and "not allowed yet" in failed["error"]
    logs = ops("GET", f"/api/v1/runs/{failed['id']}/steps/double/logs", 200)
    assert "doubling 21" in logs["attempts"][0]["logs"]

    # restart from the failed step, now allowed: `double` is reused, not run again
    dev("PUT", "/api/v1/variables/life_allowed", 204, json={"value": True})
    restarted = ops("POST", f"/api/v1/runs/{failed['id']}/restart", 202, json={"from": "check"})
    done = ops.until(restarted["id"], "succeeded", "failed")
    assert done["status"] == "succeeded" and done["result"] == 43
    assert [s["path"] for s in done["steps"]] == ["double", "check"] and done["restarted_from"] == failed["id"]
    assert [s["reused_from"] for s in done["steps"]] == [failed["id"], None]

    # run async, then poll
    started = ops("POST", "/api/v1/flows/life/calc/runs", 202, json={"inputs": {"n": 1}})
    assert ops.until(started["id"], "succeeded", "failed")["result"] == 3

    # cancel a running step
    slow = ops("POST", "/api/v1/flows/life/slow/runs", 202, json={})
    deadline = time.monotonic() + 60
    while not any(s["status"] == "running" for s in ops("GET", f"/api/v1/runs/{slow['id']}", 200)["steps"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    began = time.monotonic()
    ops("POST", f"/api/v1/runs/{slow['id']}/cancel", 200, json={})
    cancelled = ops.until(slow["id"], "cancelled", timeout=10)
    assert time.monotonic() - began < 10 and "never" not in [s["path"] for s in cancelled["steps"]]

    # approval
    gated = ops("POST", "/api/v1/flows/life/gated/runs", 202, json={})
    deadline = time.monotonic() + 60
    while not any(s["status"] == "waiting" for s in ops("GET", f"/api/v1/runs/{gated['id']}", 200)["steps"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ops("POST", f"/api/v1/runs/{gated['id']}/steps/gate/approve", 200, json={"reason": "looks good"})
    assert ops.until(gated["id"], "succeeded", "failed")["result"] == "shipped"

    # the audit trail holds each of these, with who did it
    wanted = [("token.created", "token:life-developer"), ("script.saved", "script:life/double"),
                     ("variable.set", "var:life_allowed"), ("flow.saved", "flow:life/calc"),
                     ("run.created", f"run:{failed['id']}"), ("run.failed", f"run:{failed['id']}"),
                     ("run.created", f"run:{restarted['id']}"), ("run.succeeded", f"run:{restarted['id']}"),
                     ("run.cancelled", f"run:{slow['id']}"), ("step.approved", f"run:{gated['id']}")]
    events = [e for target in {t for _, t in wanted}  # by target: other tests' events come first in the trail
              for e in admin("GET", f"/api/v1/audit?limit=500&target={target}", 200)["items"]]
    seen = {(e["action"], e["target"]) for e in events}
    for expected in wanted:
        assert expected in seen, expected
    actors = {e["actor"] for e in events if e["target"] == f"run:{slow['id']}" and e["action"] == "run.cancelled"}
    assert actors == {"token:life-operator"}


def test_the_readme_api_session_works_as_printed(server, tmp_path) -> None:
    text = (ROOT / "README.md").read_text()
    session = text.split("<!-- api-session -->\n```sh\n", 1)[1].split("\n```", 1)[0]
    script = tmp_path / "session.sh"
    script.write_text("set -euo pipefail\n" + session)
    env = {**os.environ, "API": server, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    try:
        done = subprocess.run(["bash", str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the session hangs:\n{exc.stdout[-3000:]}\n{exc.stderr[-3000:]}") from None
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert '{"status":"ok"}' in out
    assert '{"text":{"type":"string"},"times":{"default":1,"type":"integer"}}' in out
    assert '{"status":"succeeded","result":{"greeting":"hello ada","letters":23,"verdict":"long"}}' in out
    assert '{"status":"succeeded","result":"published: SHIP IT SHIP IT"}' in out
    assert '"cancelled"' in out
    assert '{"name":"db_password","secret":true}' in out and "s3cret" not in out
    assert '"run.created","step.reused","run.started"' in out  # the restarted run's audit trail
    assert '{"enabled":true,"paused_until":"2030-01-01T00:00:00Z"}' in out
    assert '"hello hook"' in out


def test_a_token_in_a_url_is_refused_and_never_written_to_the_access_log(server) -> None:
    canary = "mh_canary_" + uuid.uuid4().hex
    answer = requests.post(f"{server}/api/v1/hooks/life/none?wait=1&token={canary}", json={}, timeout=30)
    assert answer.status_code == 422 and answer.json()["errors"][0]["path"] == "token"
    log = LOGS / "api-life.log"
    deadline = time.monotonic() + 10
    while "/api/v1/hooks/life/none" not in log.read_text():  # the access line names the request
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    text = log.read_text()
    assert canary not in text and "token=***" in text


def test_twenty_waiting_requests_leave_the_api_answering(server) -> None:
    """Threaded workers: requests waiting on runs hold threads, not the API."""
    from concurrent.futures import ThreadPoolExecutor

    admin = Client(server, cli_token("admin", "wait-admin"))
    made = admin("POST", "/api/v1/tokens", 201, json={"name": "wait-dev", "role": "developer"})["token"]
    dev = Client(server, made)
    dev("PUT", "/api/v1/flows/life/held", 201, data="id: life/held\nsteps:\n  - {id: gate, approval: {}}\n",
        headers={"Content-Type": "application/yaml"})

    def hold(i: int) -> int:
        answer = dev.session.post(f"{server}/api/v1/flows/life/held/runs?wait=8", json={}, timeout=60)
        return answer.status_code

    with ThreadPoolExecutor(20) as pool:
        waiting = [pool.submit(hold, i) for i in range(20)]
        time.sleep(1.5)  # all twenty are waiting now
        began = time.monotonic()
        assert requests.get(f"{server}/healthz", timeout=5).status_code == 200
        assert dev.session.get(f"{server}/api/v1/flows", timeout=5).status_code == 200
        answered_in = time.monotonic() - began
        assert all(not w.done() for w in waiting)  # they were still waiting while the others answered
        assert [w.result() for w in waiting] == [202] * 20
    assert answered_in < 2, answered_in
