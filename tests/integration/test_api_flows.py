"""The HTTP API for flow definitions, spoken to over HTTP with real tokens and Postgres."""
from __future__ import annotations

import json
import re

import pytest

from api.auth import PUBLIC
from orchestrator.store.access import Role, create_token

pytestmark = pytest.mark.integration

FLOW = """id: api/hello
inputs:
  name: {type: string, default: world}
steps:
  - id: greet
    python: |
      def main(name: str) -> str:
          return "hello " + name
    with: {name: "${{ inputs.name }}"}
"""


@pytest.fixture(scope="module")
def client(engine):
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    app = create_app(load_settings(), engine, send, revoke)
    return app.test_client()


@pytest.fixture(scope="module")
def tokens(engine) -> dict[Role, str]:
    return {role: create_token(engine, f"test-{role.value}", role) for role in Role}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_needs_no_token_and_readiness_checks_database_and_broker(client) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    checks = ready.json["checks"]  # and, while other tests' event triggers exist, the listener's
    assert ready.status_code == 200 and checks["database"] == checks["broker"] == "ok"
    assert ready.json["status"] == ("ready" if all(v == "ok" for v in checks.values()) else "degraded")


def test_every_api_route_needs_a_valid_token(client, tokens) -> None:
    missing = client.get("/api/v1/flows")
    assert missing.status_code == 401 and missing.mimetype == "application/problem+json"
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    assert client.get("/api/v1/flows", headers=auth("mr_forged")).status_code == 401


def test_a_developer_saves_versions_and_anyone_reads_them(client, tokens) -> None:
    headers = {**auth(tokens[Role.DEVELOPER]), "Content-Type": "application/yaml"}
    first = client.put("/api/v1/flows/api/hello", data=FLOW, headers=headers)
    assert first.status_code == 201, first.json
    again = client.put("/api/v1/flows/api/hello", data=FLOW, headers=headers)
    assert again.status_code == 200 and again.json["version"] == first.json["version"]
    changed = client.put("/api/v1/flows/api/hello", data=FLOW.replace("world", "there"), headers=headers)
    assert changed.status_code == 201 and changed.json["version"] == first.json["version"] + 1
    latest = client.get("/api/v1/flows/api/hello", headers=auth(tokens[Role.VIEWER]))
    assert latest.json["version"] == changed.json["version"]
    assert latest.json["document"]["inputs"]["name"]["default"] == "there"
    old = client.get(f"/api/v1/flows/api/hello?version={first.json['version']}", headers=auth(tokens[Role.VIEWER]))
    assert old.json["document"]["inputs"]["name"]["default"] == "world"
    listed = client.get("/api/v1/flows?prefix=api/hel", headers=auth(tokens[Role.VIEWER])).json
    assert [i["id"] for i in listed["items"]] == ["api/hello"]


def test_viewers_and_operators_may_not_save_flows(client, tokens) -> None:
    for role in (Role.VIEWER, Role.OPERATOR):
        refused = client.put("/api/v1/flows/api/hello", data=FLOW,
                             headers={**auth(tokens[role]), "Content-Type": "application/yaml"})
        assert refused.status_code == 403, role
        assert refused.json["detail"] == f"role '{role.value}' may not define"


def test_an_invalid_flow_is_refused_with_every_problem_and_nothing_is_stored(client, tokens) -> None:
    bad = FLOW.replace("${{ inputs.name }}", "${{ inputs.nme }}").replace("api/hello", "api/broken")
    response = client.put("/api/v1/flows/api/broken", data=bad,
                          headers={**auth(tokens[Role.DEVELOPER]), "Content-Type": "application/yaml"})
    assert response.status_code == 422
    assert response.json["errors"] == [{"path": "steps[0].with.name",
                                        "message": "unknown input 'nme'; did you mean 'name'"}]
    assert client.get("/api/v1/flows/api/broken", headers=auth(tokens[Role.VIEWER])).status_code == 404


def test_validate_stores_nothing_and_reports_problems(client, tokens) -> None:
    headers = {**auth(tokens[Role.VIEWER]), "Content-Type": "application/json"}
    ok = client.post("/api/v1/flows/validate", data=json.dumps({"id": "api/x", "steps": [{"id": "a", "bash": "echo"}]}),
                     headers=headers)
    assert ok.status_code == 200 and ok.json["valid"] is True
    bad = client.post("/api/v1/flows/validate", data='{"id": "api/x", "steps": [{"id": "a", "rust": "x"}]}',
                      headers=headers)
    assert bad.status_code == 422 and bad.json["errors"][0]["path"] == "steps[0]"
    assert client.get("/api/v1/flows/api/x", headers=auth(tokens[Role.VIEWER])).status_code == 404


@pytest.mark.parametrize(("body", "content_type", "status", "detail"), [
    ("x: [", "application/yaml", 422, "invalid YAML"),
    ("a: &x 1\nb: *x\n", "application/yaml", 422, "anchors and aliases"),
    ("{", "application/json", 422, "invalid JSON"),
    ("id: a", "text/plain", 415, "application/yaml or application/json"),
    ("x" * (2 << 20), "application/yaml", 413, "Request Entity Too Large"),
])
def test_hostile_bodies_get_a_clear_4xx(client, tokens, body, content_type, status, detail) -> None:
    response = client.put("/api/v1/flows/api/hostile", data=body,
                          headers={**auth(tokens[Role.DEVELOPER]), "Content-Type": content_type})
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    text = json.dumps(response.json)
    assert detail in text and "Traceback" not in text


def test_the_url_id_must_match_the_document(client, tokens) -> None:
    response = client.put("/api/v1/flows/api/other", data=FLOW,
                          headers={**auth(tokens[Role.DEVELOPER]), "Content-Type": "application/yaml"})
    assert response.status_code == 422 and response.json["errors"][0]["path"] == "id"


def test_unknown_routes_and_methods_are_problem_documents(client, tokens) -> None:
    assert client.get("/api/v1/nothing", headers=auth(tokens[Role.ADMIN])).status_code == 404
    wrong_method = client.patch("/api/v1/flows/validate", headers=auth(tokens[Role.ADMIN]))
    assert wrong_method.status_code == 405 and wrong_method.mimetype == "application/problem+json"
    missing = client.get("/nothing")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_every_api_route_declares_the_permission_it_needs(client) -> None:
    app = client.application
    routes = [rule for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/v1") and rule.endpoint not in PUBLIC]
    assert routes
    for rule in routes:
        view = app.view_functions[rule.endpoint]
        assert getattr(view, "millrace_permission", None) is not None, rule.rule


def test_the_docs_page_is_public_and_the_document_it_shows_is_not(client, tokens) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'url: "/api/v1/openapi.json"' in page.text and "swagger-ui-bundle.js" in page.text
    assert "Bearer " in page.text  # it sends the token it asks for
    assert client.get("/api/v1/openapi.json").status_code == 401
    assert set(PUBLIC) == {rule.endpoint for rule in client.application.url_map.iter_rules()
                           if getattr(client.application.view_functions[rule.endpoint], "millrace_permission",
                                      None) is None and rule.endpoint != "static"
                           and not rule.endpoint.startswith("console.")}
    # the console's pages need a session instead (api/console: every page but sign-in and its files)
    from api.console import OPEN

    for rule in client.application.url_map.iter_rules():
        if rule.endpoint.startswith("console.") and rule.endpoint not in OPEN:
            url = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", "x", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                answer = client.open(url, method=method)
                assert answer.status_code == 302 and "/sign-in" in answer.headers["Location"], (method, url)


def test_tokens_create_prints_the_token_on_its_last_line(engine, client, capsys) -> None:
    from orchestrator.cli.main import main

    assert main(["tokens", "create", "--role", "viewer", "--name", "ci-bot"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert client.get("/api/v1/flows", headers=auth(token)).status_code == 200
    assert client.put("/api/v1/flows/api/x", data=FLOW, headers=auth(token)).status_code == 403


def test_versions_come_with_diffs_and_deletion_keeps_old_versions(client, tokens) -> None:
    headers = {**auth(tokens[Role.DEVELOPER]), "Content-Type": "application/yaml"}
    text = FLOW.replace("api/hello", "api/versioned")
    client.put("/api/v1/flows/api/versioned", data=text, headers=headers)
    client.put("/api/v1/flows/api/versioned", data=text.replace("world", "moon"), headers=headers)
    versions = client.get("/api/v1/flows/api/versioned/versions", headers=auth(tokens[Role.VIEWER])).json["items"]
    assert [v["version"] for v in versions] == [1, 2]
    assert "-  name: {type: string, default: world}" in versions[1]["diff"]
    assert "+  name: {type: string, default: moon}" in versions[1]["diff"]
    first = client.get("/api/v1/flows/api/versioned/versions?limit=1", headers=auth(tokens[Role.VIEWER])).json
    assert [v["version"] for v in first["items"]] == [1] and first["next_cursor"] == "1"
    rest = client.get(f"/api/v1/flows/api/versioned/versions?limit=1&cursor={first['next_cursor']}",
                      headers=auth(tokens[Role.VIEWER])).json
    assert rest["items"] == versions[1:]  # the diff against the version on the page before
    assert client.delete("/api/v1/flows/api/versioned", headers=auth(tokens[Role.VIEWER])).status_code == 403
    assert client.delete("/api/v1/flows/api/versioned", headers=auth(tokens[Role.DEVELOPER])).status_code == 204
    assert client.get("/api/v1/flows/api/versioned", headers=auth(tokens[Role.VIEWER])).status_code == 404
    kept = client.get("/api/v1/flows/api/versioned?version=1", headers=auth(tokens[Role.VIEWER]))
    assert kept.status_code == 200 and kept.json["version"] == 1
    listed = client.get("/api/v1/flows?prefix=api/versioned", headers=auth(tokens[Role.VIEWER])).json["items"]
    assert listed == []
    assert client.delete("/api/v1/flows/api/versioned", headers=auth(tokens[Role.DEVELOPER])).status_code == 404


def test_saving_a_deleted_flow_again_restores_it(client, tokens) -> None:
    headers = {**auth(tokens[Role.DEVELOPER]), "Content-Type": "application/yaml"}
    text = FLOW.replace("api/hello", "api/phoenix")
    client.put("/api/v1/flows/api/phoenix", data=text, headers=headers)
    client.delete("/api/v1/flows/api/phoenix", headers=headers)
    assert client.put("/api/v1/flows/api/phoenix", data=text, headers=headers).status_code == 200
    assert client.get("/api/v1/flows/api/phoenix", headers=headers).json["version"] == 1


def test_the_openapi_document_describes_every_route_with_its_permission_and_body(client, tokens) -> None:
    from openapi_spec_validator import validate

    doc = client.get("/api/v1/openapi.json", headers=auth(tokens[Role.VIEWER])).json
    validate(doc)  # a valid OpenAPI 3.1 document, every $ref resolving
    app = client.application
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "docs", "docs_assets") or rule.endpoint.startswith("console."):
            continue  # the docs page and its files, the console's pages
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = doc["paths"][path][method.lower()]
            if rule.rule.startswith("/api/v1") and rule.endpoint not in PUBLIC:
                assert operation["security"] == [{"bearer": []}], path
                assert operation["x-permission"] == app.view_functions[rule.endpoint].millrace_permission.value
    start = doc["paths"]["/api/v1/flows/{flow_id}/runs"]["post"]
    ref = start["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["additionalProperties"] is False
    put = doc["paths"]["/api/v1/flows/{flow_id}"]["put"]["requestBody"]["content"]
    assert put["application/yaml"]["schema"]["$ref"] == "#/components/schemas/Flow"
    assert "PythonStep" in doc["components"]["schemas"]


def test_each_role_gets_exactly_what_its_permissions_allow_on_every_route(client, tokens) -> None:
    app = client.application
    samples = {"flow_id": "api/hello", "run_id": "00000000-0000-0000-0000-000000000000", "step": "gate",
               "path": "gate", "name": "nothing_here", "token_id": "999999", "schedule_id": "s-none",
               "trigger_id": "e-none"}
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1") or rule.endpoint in PUBLIC:
            continue
        needed = app.view_functions[rule.endpoint].millrace_permission
        url = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: samples[m.group(1)], rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for role, token in tokens.items():
                # Bodies are left empty: an allowed call may then fail validation, never authorization.
                response = client.open(url, method=method, headers={**auth(token), "Content-Type": "application/json"},
                                       data="")
                if needed in role.permissions:
                    assert response.status_code not in (401, 403), (method, url, role, response.json)
                else:
                    assert response.status_code == 403, (method, url, role, response.status_code)
                checked += 1
    assert checked >= 4 * 20


def test_an_admin_manages_tokens_through_the_api(client, tokens) -> None:
    admin = auth(tokens[Role.ADMIN])
    created = client.post("/api/v1/tokens", json={"name": "robot", "role": "operator"}, headers=admin)
    assert created.status_code == 201 and created.json["token"].startswith("mr_")
    robot = auth(created.json["token"])
    assert client.get("/api/v1/runs", headers=robot).status_code == 200
    listed = client.get("/api/v1/tokens", headers=admin).json["items"]
    entry = next(t for t in listed if t["name"] == "robot")
    assert "token" not in entry and entry["role"] == "operator"
    assert client.post("/api/v1/tokens", json={"name": "x", "role": "root"}, headers=admin).status_code == 422
    assert client.delete(f"/api/v1/tokens/{entry['id']}", headers=admin).status_code == 204
    assert client.get("/api/v1/runs", headers=robot).status_code == 401
