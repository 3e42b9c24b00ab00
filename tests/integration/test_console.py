"""The console's edges, through Flask's client on the real database: where sign-in may send
a browser, who may sign a browser in, and odd input answered with a page, never a 500."""
from __future__ import annotations

import uuid

import pytest

from orchestrator.store.access import Role, create_token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app(engine):
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    return create_app(load_settings(), engine, send, revoke)


def _signed_in(app, engine, role: Role = Role.OPERATOR):
    client = app.test_client()
    answer = client.post("/sign-in", data={"token": create_token(engine, f"edge-{uuid.uuid4().hex[:6]}", role)})
    assert answer.status_code == 302
    page = client.get("/")
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return client, csrf


@pytest.mark.parametrize("target", ["//evil.example/", "/\t/evil.example", "/\\evil.example",
                                    "https://evil.example/", "/\n/x", "javascript:alert(1)"])
def test_sign_in_sends_a_browser_only_to_a_page_of_this_site(app, engine, target) -> None:
    token = create_token(engine, f"edge-next-{uuid.uuid4().hex[:6]}", Role.VIEWER)
    answer = app.test_client().post("/sign-in", query_string={"next": target}, data={"token": token})
    assert answer.status_code == 302 and answer.headers["Location"] == "/", answer.headers["Location"]


def test_no_other_site_can_sign_a_browser_in(app, engine) -> None:
    token = create_token(engine, f"edge-csrf-{uuid.uuid4().hex[:6]}", Role.VIEWER)
    client = app.test_client()
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        refused = client.post("/sign-in", data={"token": token}, headers=headers)
        assert refused.status_code == 403 and "Set-Cookie" not in refused.headers, headers
    ours = client.post("/sign-in", data={"token": token}, headers={"Origin": "http://localhost",
                                                                   "Sec-Fetch-Site": "same-origin"})
    assert ours.status_code == 302


def test_odd_input_is_a_page_not_a_500(app, engine) -> None:
    client, csrf = _signed_in(app, engine)
    for url in ("/?endpoint=x", "/?_method=POST", "/?_scheme=http&status=nope", "/?cursor=%C2%B2_x",
                "/audit?after=%C2%B2", "/?since=0001-01-01T00:00&until=garbage", "/flows?after=%00"):
        answer = client.get(url)
        assert answer.status_code in (200, 422), (url, answer.status_code)
        assert "Traceback" not in answer.text
    assert 'data-live="/console/live/runs"' in client.get("/?_scheme=http").text  # its own, not what was asked
    stale = client.post("/runs/x/cancel", data={"csrf": "é"})
    assert stale.status_code == 403
    long_reason = client.post("/runs/x/steps/gate/decide", data={"csrf": csrf, "decision": "approve",
                                                                 "reason": "r" * 2001})
    assert long_reason.status_code == 422 and "at most 2000 characters" in long_reason.text
