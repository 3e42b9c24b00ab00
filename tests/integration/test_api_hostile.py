"""Hostile input: malformed, oversize, mistyped and injected requests each get the right 4xx,
as a problem document that names the place, with nothing stored and no traceback."""
from __future__ import annotations

import json
import time

import pytest

from orchestrator.store.access import Role

pytestmark = pytest.mark.integration

GOOD = ("id: hostile/ok\ninputs:\n  n: {type: integer}\n"
        "steps:\n  - {id: a, bash: echo $n, with: {n: '${{ inputs.n }}'}}\n")
YAML, JSON = "application/yaml", "application/json"
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
             "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
RUN_ID = "00000000-0000-0000-0000-000000000000"

# (name, method, url, role, content type, body, status, error path or None, words in the problem)
CASES = [
    # flow documents
    ("yaml syntax", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML, "id: [", 422, "", "invalid YAML"),
    ("json syntax", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, JSON, '{"id": ', 422, "", "invalid JSON"),
    ("alias bomb", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML, ALIAS_BOMB, 422, "", "anchors and aliases"),
    ("python tag", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: !!python/object/apply:os.system [id]\nsteps: []", 422, "", "invalid YAML"),
    ("duplicate key", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nid: hostile/y\nsteps: []", 422, "", "duplicate key 'id'"),
    ("oversize flow", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML, "#" * (2 << 20), 413, None, "Too Large"),
    ("not a mapping", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, JSON, "[1, 2]", 422, "", "must be a mapping"),
    ("unknown kind", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nsteps: [{id: a, rust: fn}]", 422, "steps[0]", "unknown step kind 'rust'"),
    ("two kinds", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nsteps: [{id: a, bash: x, python: y}]", 422, "steps[0]", "exactly one kind"),
    ("bad expression", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nsteps: [{id: a, bash: x, with: {v: '${{ inputs. }}'}}]", 422, "steps[0].with.v", ""),
    ("dunder escape", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nsteps: [{id: a, bash: x, with: {v: \"${{ ''.__class__.__mro__ }}\"}}]", 422,
     "steps[0].with.v", "is private"),
    ("forward reference", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nsteps:\n  - {id: a, bash: x, with: {v: '${{ steps.b.result }}'}}\n  - {id: b, bash: y}",
     422, "steps[0].with.v", "has not run"),
    ("duplicate step id", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nsteps: [{id: a, bash: x}, {id: a, bash: y}]", 422, "steps[1].id", "duplicate"),
    ("sql in flow id", "PUT", "/api/v1/flows/x';drop table flows;--", Role.DEVELOPER, YAML,
     "id: \"x';drop table flows;--\"\nsteps: [{id: a, bash: x}]", 422, "id", ""),
    ("id differs from url", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/other\nsteps: [{id: a, bash: x}]", 422, "id", "differs from the URL"),
    ("nul in document", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, JSON,
     '{"id": "hostile/x", "steps": [{"id": "a", "bash": "echo \\u0000"}]}', 422, "steps[0].bash", "NUL"),
    ("deep nesting", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, JSON,
     '{"id": "hostile/x", "x": ' + "[" * 50000 + "]" * 50000 + "}", 422, "", ""),
    ("text/plain flow", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, "text/plain", GOOD, 415, None,
     "application/yaml"),
    ("form-encoded run", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR,
     "application/x-www-form-urlencoded", "inputs=1", 415, None, "Content-Type: application/json"),
    ("sql step without a database", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, "application/yaml",
     "id: hostile/x\nsteps:\n  - {id: q, sql: select 1}\n", 422, "steps[0].database", "needs `database:`"),
    ("python step without main", "POST", "/api/v1/flows/validate", Role.VIEWER, "application/yaml",
     "id: hostile/x\nsteps:\n  - {id: p, python: 'x = 1'}\n", 422, "steps[0].python", "def main"),
    ("a time UTC cannot hold", "GET", "/api/v1/runs?since=0001-01-01T00:00:00%2B14:00", Role.VIEWER, JSON, "", 422,
     "since", "outside the times UTC can hold"),
    ("unicode digit as a cursor", "GET", "/api/v1/audit?cursor=%C2%B2", Role.VIEWER, JSON, "", 422, "cursor",
     "not a cursor this API returned"),
    ("unicode digit as a version cursor", "GET", "/api/v1/flows/hostile/ok/versions?cursor=%C2%B2", Role.VIEWER,
     JSON, "", 422, "cursor", "not a cursor this API returned"),
    ("limit out of range", "GET", "/api/v1/runs?limit=0", Role.VIEWER, JSON, "", 422, "limit", "greater than"),
    ("misspelt parameter", "GET", "/api/v1/runs?limt=5", Role.VIEWER, JSON, "", 422, "limt",
     "unknown query parameter"),
    ("parameter given twice", "GET", "/api/v1/runs?limit=5&limit=6", Role.VIEWER, JSON, "", 422, "limit", "once"),
    ("parameter on a route without any", "GET", "/api/v1/variables/x?next=1", Role.VIEWER, JSON, "", 422, "next",
     "no query parameters"),
    # starting runs
    ("wrong input type", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR, JSON,
     '{"inputs": {"n": "many"}}', 422, "inputs.n", "integer"),
    ("missing input", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR, JSON, '{"inputs": {}}', 422,
     "inputs.n", "required"),
    ("unknown input", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR, JSON,
     '{"inputs": {"n": 1, "m": 2}}', 422, "inputs.m", ""),
    ("unknown body field", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR, JSON,
     '{"inputs": {"n": 1}, "urgency": 9}', 422, "urgency", "unknown field"),
    ("inputs not an object", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR, JSON, '{"inputs": [1]}', 422,
     "inputs", ""),
    ("body not json", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR, JSON, "n=1", 422, "", "must be JSON"),
    ("nan input", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR, JSON, '{"inputs": {"n": NaN}}', 422,
     "inputs.n", ""),
    ("oversize run body", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR, JSON,
     json.dumps({"inputs": {"n": 1, "pad": "x" * (2 << 20)}}), 413, None, "Too Large"),
    ("wait not a number", "POST", "/api/v1/flows/hostile/ok/runs?wait=soon", Role.OPERATOR, JSON,
     '{"inputs": {"n": 1}}', 422, "wait", "number"),
    ("long idempotency key", "POST", "/api/v1/flows/hostile/ok/runs", Role.OPERATOR, JSON,
     '{"inputs": {"n": 1}}', 422, "Idempotency-Key", ""),
    ("unknown flow", "POST", "/api/v1/flows/hostile/nowhere/runs", Role.OPERATOR, JSON, "{}", 404, None,
     "does not exist"),
    # reading and deciding runs
    ("run id injection", "GET", "/api/v1/runs/1%27%20or%20%271%27=%271", Role.VIEWER, None, None, 404, None, ""),
    ("bad status filter", "GET", "/api/v1/runs?status=done;drop", Role.VIEWER, None, None, 422, "status", ""),
    ("bad since", "GET", "/api/v1/runs?since=yesterday", Role.VIEWER, None, None, 422, "since", "ISO 8601"),
    ("forged cursor", "GET", "/api/v1/runs?cursor=99999999999999999999999_x", Role.VIEWER, None, None, 422,
     "cursor", ""),
    ("limit not a number", "GET", "/api/v1/runs?limit=lots", Role.VIEWER, None, None, 422, "limit", "integer"),
    ("nul in query", "GET", "/api/v1/runs?flow=a%00b", Role.VIEWER, None, None, 422, "query flow", "NUL"),
    ("approve nothing", "POST", f"/api/v1/runs/{RUN_ID}/steps/gate/approve", Role.OPERATOR, JSON, "{}", 404, None, ""),
    ("restart unknown run", "POST", f"/api/v1/runs/{RUN_ID}/restart", Role.OPERATOR, JSON, '{"from": "a"}', 404, None,
     ""),
    # variables, scripts, tokens
    ("bad variable name", "PUT", "/api/v1/variables/a%20b", Role.DEVELOPER, JSON, '{"value": 1}', 422, "name", ""),
    ("variable without value", "PUT", "/api/v1/variables/x", Role.DEVELOPER, JSON, '{"secret": true}', 422, "value",
     "required"),
    ("secret of wrong type", "PUT", "/api/v1/variables/x", Role.DEVELOPER, JSON, '{"value": 1, "secret": "yes"}', 422,
     "secret", ""),
    ("nul in script", "PUT", "/api/v1/scripts/hostile/s", Role.DEVELOPER, JSON,
     '{"language": "bash", "code": "echo \\u0000"}', 422, "code", "NUL"),
    ("script path traversal", "PUT", "/api/v1/scripts/../../etc/passwd", Role.DEVELOPER, JSON,
     '{"language": "bash", "code": "echo"}', 422, "path", ""),
    ("unknown role", "POST", "/api/v1/tokens", Role.ADMIN, JSON, '{"name": "x", "role": "root"}', 422, "role", ""),
    ("huge token id", "DELETE", "/api/v1/tokens/99999999999999999999999", Role.ADMIN, None, None, 404, None, ""),
    # expressions that would build huge values: refused at validation, evaluated within a budget
    ("huge string", "POST", "/api/v1/flows/validate", Role.VIEWER, YAML,
     "id: hostile/x\nsteps: [{id: a, bash: x, with: {v: \"${{ 'a'*10**9 }}\"}}]", 422, "steps[0].with.v",
     "at most 1,000,000"),
    ("huge power", "POST", "/api/v1/flows/validate", Role.VIEWER, YAML,
     "id: hostile/x\nsteps: [{id: a, bash: x, with: {v: \"${{ 10**5000 }}\"}}]", 422, "steps[0].with.v",
     "larger than 4096 bits"),
    ("huge tower", "POST", "/api/v1/flows/validate", Role.VIEWER, YAML,
     "id: hostile/x\nsteps: [{id: a, bash: x, with: {v: \"${{ 10**(10**7) }}\"}}]", 422, "steps[0].with.v",
     "larger than 4096 bits"),
    ("json duplicate key", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, JSON,
     '{"id": "hostile/x", "steps": [{"id": "a", "bash": "echo 1", "bash": "echo 2"}]}', 422, "", "duplicate key"),
    ("too many steps", "POST", "/api/v1/flows/validate", Role.VIEWER, JSON,
     json.dumps({"id": "hostile/x", "steps": [{"id": f"s{i}", "bash": "x"} for i in range(2001)]}), 422,
     "steps", "at most 2,000"),
    ("limits above the maximum", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nsteps: [{id: a, bash: x, limits: {memory: 64GiB}}]", 422, "steps[0].limits.memory",
     "MILLRACE_STEP_MEMORY_MB_MAX"),
    ("limits on sql", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nsteps: [{id: a, sql: select 1, database: db, network: none}]", 422, "steps[0].network",
     "does not apply to an sql step"),
    ("bad size", "PUT", "/api/v1/flows/hostile/x", Role.DEVELOPER, YAML,
     "id: hostile/x\nsteps: [{id: a, bash: x, limits: {disk: lots}}]", 422, "steps[0].limits.disk", "not a size"),
    # access
    ("basic auth", "GET", "/api/v1/flows", None, None, None, 401, None, "Bearer"),
]


@pytest.fixture(scope="module")
def ready(api):
    api.save_flow(GOOD)
    return api


@pytest.mark.parametrize(("method", "url", "role", "content_type", "body", "status", "path", "words"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_hostile_request_gets_the_right_4xx(ready, engine, method, url, role, content_type, body, status, path,
                                            words) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if role is None:
        headers["Authorization"] = "Basic YWRtaW46YWRtaW4="
    if "idempotency" in url or path == "Idempotency-Key":
        headers["Idempotency-Key"] = "k" * 5000
    before = _counts(engine)
    response = ready.client.open(url, method=method, data=body, headers={
        **(ready.headers(role) if role else {}), **headers})
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.mimetype == "application/problem+json"
    problem = response.json
    text = json.dumps(problem)
    assert "Traceback" not in text and words in text, problem
    if path is not None:
        assert path in [error["path"] for error in problem["errors"]], problem
    assert _counts(engine) == before  # nothing stored half-way


def test_there_are_at_least_thirty_hostile_cases() -> None:
    assert len(CASES) >= 30


def _counts(engine) -> tuple[int, ...]:
    from sqlalchemy import func, select

    from orchestrator.store import tables

    with engine.connect() as conn:
        return tuple(conn.execute(select(func.count()).select_from(table)).scalar_one()
                     for table in (tables.flow_versions, tables.runs, tables.script_versions))


def test_hostile_expressions_cost_the_api_no_lasting_memory(ready) -> None:
    """20 validations of each of the bodies that once cost 22 s and 3.8 GB: each answers 422
    at once, and the API's memory stays where it was."""
    bodies = [f"id: hostile/x\nsteps: [{{id: a, bash: x, with: {{v: \"${{{{ {e} }}}}\"}}}}]"
              for e in ("'a'*10**9", "10**5000", "10**(10**7)")]
    headers = {**ready.headers(Role.VIEWER), "Content-Type": YAML}
    ready.client.post("/api/v1/flows/validate", data=bodies[0], headers=headers)  # imports warmed
    before = _rss_mib()
    for _ in range(20):
        for body in bodies:
            began = time.monotonic()
            response = ready.client.post("/api/v1/flows/validate", data=body, headers=headers)
            assert response.status_code == 422 and time.monotonic() - began < 1.0
    assert _rss_mib() - before < 20


def _rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")
