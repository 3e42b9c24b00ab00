"""The console in a real headless Chromium (Debian's, driven by Playwright; no browser is
downloaded) against `millrace api` and a worker on the real services."""
from __future__ import annotations

import os
import re
import uuid

import pytest
import requests

from orchestrator.store.access import Role, create_token
from tests.conftest import ROOT, Served, free_port
from tests.integration.test_flower_browser import chromium

pytestmark = pytest.mark.integration
SHOTS = ROOT / "docs" / "console"


@pytest.fixture(scope="module")
def console(engine, worker):
    port = free_port()
    served = Served("api-console", ["api", "--port", str(port), "--workers", "1"], "/readyz", port=port)
    yield served.base
    served.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


def _signed_in(browser, base: str, token: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/")
    assert "/sign-in" in page.url  # no session: the sign-in page
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return page


def _until(check, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.2)


def _api(base: str, token: str):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def call(method: str, path: str, **kwargs):
        answer = session.request(method, f"{base}/api/v1{path}", timeout=60, **kwargs)
        assert answer.status_code < 400, answer.text
        return answer.json() if answer.content else None

    return call


def test_an_operator_follows_acts_and_runs_from_the_console(console, browser, engine) -> None:
    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-op-{tag}", Role.DEVELOPER)
    api = _api(console, token)
    yaml = {"Content-Type": "application/yaml"}
    api("PUT", f"/flows/console/each_{tag}", headers=yaml, data=(
        f"id: console/each_{tag}\nsteps:\n  - id: each\n    for_each: [1, 2, 3]\n    parallel: 1\n    do:\n"
        "      - {id: nap, bash: 'sleep 0.7; echo $I', with: {I: \"${{ item }}\"}}\n"))
    api("PUT", f"/flows/console/gate_{tag}", headers=yaml, data=(
        f"id: console/gate_{tag}\nsteps:\n  - {{id: gate, approval: {{}}}}\n  - {{id: after, bash: echo shipped}}\n"))
    api("PUT", f"/flows/console/boom_{tag}", headers=yaml, data=(
        f"id: console/boom_{tag}\ninputs:\n  n: {{type: integer, default: 2}}\nsteps:\n"
        "  - {id: first, bash: echo one}\n"
        "  - {id: boom, bash: 'echo about to fail; echo broken >&2; exit 3'}\n"))
    page = _signed_in(browser, console, token)
    SHOTS.mkdir(parents=True, exist_ok=True)

    # a for_each run, followed live on its page: running, then succeeded, with no reload
    each = api("POST", f"/flows/console/each_{tag}/runs", json={})["id"]
    page.goto(f"{console}/runs/{each}")
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector("#run-status .status-running", timeout=30_000)
    page.wait_for_selector("#run-status .status-succeeded", timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True  # the same document: updated in place
    assert page.locator("#steps tr[data-path='each[2].nap'] .status-succeeded").count() == 1
    assert page.evaluate("document.querySelector('img.timeline').naturalWidth") > 0  # the Gantt chart loads
    assert "3 items · 3 succeeded" in page.inner_text("#graph [data-path='each'] > details > summary")
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)

    # a failed step: its error on the run page, its logs a click away
    boom = api("POST", f"/flows/console/boom_{tag}/runs", json={"inputs": {"n": 1}}, params={"wait": 30})["id"]
    page.goto(f"{console}/runs/{boom}")
    page.click("#steps tr[data-path='boom'] summary")
    assert "broken" in page.inner_text("#steps tr[data-path='boom'] details")
    page.click("#steps tr[data-path='boom'] a:text('logs')")
    assert "about to fail" in page.inner_text("main")
    # restart it from the failed step: a new run, reusing `first`
    page.goto(f"{console}/runs/{boom}")
    page.select_option("#restart-from", "boom")
    page.click("button:text('Restart')")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    assert boom not in page.url and f"restarted from {boom[:8]}" in page.inner_text("main")

    # an approval: approve it and see the run finish
    gate = api("POST", f"/flows/console/gate_{tag}/runs", json={})["id"]
    _until(lambda: any(st["status"] == "waiting" for st in api("GET", f"/runs/{gate}")["steps"]))
    page.goto(f"{console}/runs/{gate}")
    page.fill("form.decision input[name=reason]", "looks good")
    page.click("form.decision button[value=approve]")
    page.wait_for_selector("#run-status .status-succeeded", timeout=60_000)

    # the run form: a wrong type is named by its field, nothing starts; a right one starts a run
    page.goto(f"{console}/flows/console/boom_{tag}")
    page.fill("#in-n", "many")
    page.click("form[aria-label='Run this flow'] button[type=submit]")
    assert "not a valid integer" in page.inner_text("#err-n")
    page.screenshot(path=str(SHOTS / "flow.png"), full_page=True)
    page.fill("#in-n", "5")
    page.click("form[aria-label='Run this flow'] button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    assert "trigger console" in page.inner_text("main") and f"started by token:console-op-{tag}" in page.inner_text(
        "main")

    page.goto(f"{console}/flows/console/boom_{tag}")
    assert page.locator("pre.source .y-key", has_text="steps").count() == 1  # the source, highlighted

    # the runs page lists them, filtered by flow, with who started each
    page.goto(f"{console}/?flow=console/boom_{tag}")
    assert page.locator("#runs tbody tr").count() >= 3
    assert f"token:console-op-{tag}" in page.inner_text("#runs tbody")
    page.goto(f"{console}/?flow=console/boom_{tag}&until=2000-01-01T00:00")
    assert "No runs." in page.inner_text("#runs tbody")  # a time range before any of them
    page.screenshot(path=str(SHOTS / "runs.png"), full_page=True)
    page.close()


def test_the_graph_shows_branches_the_case_taken_and_the_subflow_run(console, browser, engine) -> None:
    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-graph-{tag}", Role.DEVELOPER)
    api = _api(console, token)
    yaml = {"Content-Type": "application/yaml"}
    api("PUT", f"/flows/console/child_{tag}", headers=yaml,
        data=f"id: console/child_{tag}\nsteps:\n  - {{id: inner, bash: echo child}}\n")
    api("PUT", f"/flows/console/shape_{tag}", headers=yaml, data=(
        f"id: console/shape_{tag}\nsteps:\n"
        "  - id: both\n    parallel:\n      - {id: left, steps: [{id: l1, bash: echo l}]}\n"
        "      - {id: right, steps: [{id: r1, bash: echo r}]}\n"
        "  - id: pick\n    switch:\n      - {if: \"${{ 1 > 2 }}\", do: [{id: never, bash: echo no}]}\n"
        "    else: [{id: fallback, bash: echo yes}]\n"
        f"  - {{id: sub, flow: console/child_{tag}}}\n"))
    run_id = api("POST", f"/flows/console/shape_{tag}/runs", json={}, params={"wait": 60})["id"]
    page = _signed_in(browser, console, token)
    page.goto(f"{console}/runs/{run_id}")
    graph = page.locator("#graph")
    assert graph.locator("[data-path='both'] .branch").count() == 2
    assert graph.locator("[data-path='both.left.l1'] .status-succeeded").count() == 1
    taken = graph.locator("[data-path='pick'] .branch.taken")
    assert taken.count() == 1 and "else (taken)" in taken.inner_text()
    assert graph.locator("[data-path='pick.never'] .status-pending").count() == 1  # the case not taken
    child = graph.locator("[data-path='sub'] a")
    child.click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    assert f"console/child_{tag}" in page.inner_text("main") and f"subflow of {run_id[:8]}" in page.inner_text("main")


def test_a_viewer_sees_no_action_and_a_forged_action_is_refused(console, browser, engine) -> None:
    tag = uuid.uuid4().hex[:6]
    admin = _api(console, create_token(engine, f"console-admin-{tag}", Role.ADMIN))
    admin("PUT", f"/flows/console/held_{tag}", headers={"Content-Type": "application/yaml"},
          data=f"id: console/held_{tag}\nsteps:\n  - {{id: gate, approval: {{}}}}\n")
    held = admin("POST", f"/flows/console/held_{tag}/runs", json={})["id"]
    page = _signed_in(browser, console, create_token(engine, f"console-viewer-{tag}", Role.VIEWER))
    page.goto(f"{console}/runs/{held}")
    assert page.locator("section.actions").count() == 0 and page.locator("button:text('Approve')").count() == 0
    page.goto(f"{console}/flows/console/held_{tag}")
    assert page.locator("form[aria-label='Run this flow']").count() == 0
    csrf = page.evaluate("document.querySelector('input[name=csrf]').value")  # the sign-out form's
    forged = page.request.post(f"{console}/runs/{held}/steps/gate/decide",
                               form={"csrf": csrf, "decision": "approve"})
    assert forged.status == 403 and "may not operate" in forged.text()
    without = page.request.post(f"{console}/runs/{held}/cancel", form={})
    assert without.status == 403  # no form secret: refused whatever the role
    admin("POST", f"/runs/{held}/cancel", json={})


def test_a_revoked_token_ends_its_sessions_and_the_cookie_holds_no_token(console, browser, engine) -> None:
    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-gone-{tag}", Role.VIEWER)
    page = _signed_in(browser, console, token)
    [cookie] = [c for c in page.context.cookies() if c["name"] == "millrace_session"]
    assert token not in cookie["value"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    admin = _api(console, create_token(engine, f"console-revoker-{tag}", Role.ADMIN))
    mine = [t for t in admin("GET", "/tokens", params={"limit": 200})["items"] if t["name"] == f"console-gone-{tag}"]
    admin("DELETE", f"/tokens/{mine[0]['id']}")
    page.goto(f"{console}/")
    assert "/sign-in" in page.url  # the next request finds the session over


def test_a_secret_never_appears_on_a_page(console, browser, engine) -> None:
    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-secret-{tag}", Role.ADMIN)
    api = _api(console, token)
    canary = f"canary-{uuid.uuid4().hex}"
    api("PUT", f"/variables/console_pw_{tag}", json={"value": canary, "secret": True})
    api("PUT", f"/flows/console/leak_{tag}", headers={"Content-Type": "application/yaml"}, data=(
        f"id: console/leak_{tag}\nsteps:\n  - id: say\n    bash: 'echo \"pw is $PW\"; echo \"$PW\" >&2; exit 1'\n"
        f"    with: {{PW: \"${{{{ secrets.console_pw_{tag} }}}}\"}}\n"))
    run_id = api("POST", f"/flows/console/leak_{tag}/runs", json={}, params={"wait": 30})["id"]
    page = _signed_in(browser, console, token)
    for path in ("/", f"/runs/{run_id}", f"/runs/{run_id}/steps/say/logs", f"/flows/console/leak_{tag}",
                 "/variables", f"/audit?target=run:{run_id}"):
        page.goto(console + path)
        assert canary not in page.content(), path
    page.goto(f"{console}/variables")
    row = page.locator("tr", has_text=f"console_pw_{tag}")
    assert "set (never shown)" in row.inner_text()


def test_schedules_scripts_audit_and_workers_pages(console, browser, engine) -> None:
    from orchestrator.store.verification import Verdict, keep_verdict
    from tests.conftest import QUEUE

    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-pages-{tag}", Role.ADMIN)
    api = _api(console, token)
    api("PUT", f"/scripts/console_{tag}/add", json={"language": "python",
                                                   "code": "def main(a: int, b: int = 2) -> int:\n    return a + b\n"})
    api("PUT", f"/flows/console/sched_{tag}", headers={"Content-Type": "application/yaml"}, data=(
        f"id: console/sched_{tag}\ntriggers:\n  - cron: '0 3 * * *'\nsteps:\n  - {{id: a, bash: echo}}\n"))
    api("PUT", f"/flows/console/sched_{tag}", headers={"Content-Type": "application/yaml"}, data=(
        f"id: console/sched_{tag}\ntriggers:\n  - cron: '0 4 * * *'\nsteps:\n  - {{id: a, bash: echo two}}\n"))
    keep_verdict(engine, Verdict(events=1234))
    page = _signed_in(browser, console, token)
    page.goto(f"{console}/schedules?flow=console/sched_{tag}")
    card = page.locator("section.card", has_text=f"console/sched_{tag}")
    assert "0 4 * * *" in card.inner_text() and "enabled" in card.inner_text()
    card.locator("button:text('Pause')").click()
    assert "paused" in page.locator("section.card", has_text=f"console/sched_{tag}").inner_text()
    page.goto(f"{console}/flows/console/sched_{tag}")
    page.click("summary:text('version 2')")
    assert "+  - cron: '0 4 * * *'" in page.inner_text("main")  # the versions, each with its diff
    page.goto(f"{console}/scripts/console_{tag}/add")
    assert "def main(a: int, b: int = 2)" in page.inner_text("main") and '"a"' in page.inner_text("main")
    page.goto(f"{console}/audit?action=flow.")
    assert "✓ intact" in page.inner_text("#verdict") and "1234 events" in page.inner_text("#verdict")
    page.goto(f"{console}/workers")
    assert QUEUE in page.inner_text("main")  # the session's worker, with its queue


@pytest.fixture(scope="module")
def axe(tmp_path_factory) -> str:
    """axe-core from npm (the accessibility engine browsers' devtools use), installed for the test."""
    import subprocess

    folder = tmp_path_factory.mktemp("axe")
    done = subprocess.run(["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund", "axe-core@4"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return (folder / "node_modules" / "axe-core" / "axe.min.js").read_text()


def test_the_runs_run_and_flow_pages_have_no_serious_accessibility_violation(console, browser, engine, axe) -> None:
    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-a11y-{tag}", Role.DEVELOPER)
    api = _api(console, token)
    api("PUT", f"/flows/console/a11y_{tag}", headers={"Content-Type": "application/yaml"}, data=(
        f"id: console/a11y_{tag}\ninputs:\n  who: {{type: string, default: you}}\n  n: {{type: integer}}\n"
        "  loud: {type: boolean, default: false}\n  mood: {type: string, enum: [calm, glad], default: calm}\n"
        "steps:\n  - {id: hi, bash: 'echo hi $W', with: {W: \"${{ inputs.who }}\"}}\n"))
    run_id = api("POST", f"/flows/console/a11y_{tag}/runs", json={"inputs": {"n": 1}}, params={"wait": 30})["id"]
    page = _signed_in(browser, console, token)
    found = {}
    for path in ("/", f"/runs/{run_id}", f"/flows/console/a11y_{tag}"):
        for width in (1280, 390):  # a desktop and a phone
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(console + path)
            page.add_script_tag(content=axe)
            violations = page.evaluate("async () => (await axe.run()).violations.map("
                                       "v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))")
            serious = [v for v in violations if v["impact"] in ("serious", "critical")]
            if serious:
                found[f"{path} at {width}px"] = serious
    assert not found, found


def test_a_running_steps_output_is_followed_live_and_masked(console, browser, engine) -> None:
    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-tail-{tag}", Role.ADMIN)
    api = _api(console, token)
    canary = f"canary-{uuid.uuid4().hex}"
    api("PUT", f"/variables/console_tail_{tag}", json={"value": canary, "secret": True})
    api("PUT", f"/flows/console/tail_{tag}", headers={"Content-Type": "application/yaml"}, data=(
        f"id: console/tail_{tag}\nsteps:\n  - id: slow\n"
        "    bash: 'echo first line $PW; sleep 3; echo last line'\n"
        f"    with: {{PW: \"${{{{ secrets.console_tail_{tag} }}}}\"}}\n"))
    run_id = api("POST", f"/flows/console/tail_{tag}/runs", json={})["id"]
    _until(lambda: any(st["status"] == "running" for st in api("GET", f"/runs/{run_id}")["steps"]))
    page = _signed_in(browser, console, token)
    page.goto(f"{console}/runs/{run_id}/steps/slow/logs")
    page.wait_for_function("document.getElementById('logs-1') && "
                           "document.getElementById('logs-1').textContent.includes('first line')", timeout=15_000)
    text = page.inner_text("#logs-1")
    assert "last line" not in text and "***" in text and canary not in text  # before the end, masked
    assert api("GET", f"/runs/{run_id}")["status"] == "running"
    # once the attempt ends the page shows it as recorded (it reloads itself once), then stays
    page.wait_for_function("document.getElementById('logs') && document.getElementById('logs').dataset.finished"
                           " === 'true' && document.body.innerText.includes('last line')", timeout=30_000)
    page.wait_for_load_state("load")
    assert "last line" in page.inner_text("#logs-1") and canary not in page.content()


def test_behind_a_tls_proxy_the_session_cookie_is_secure(engine) -> None:
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    token = create_token(engine, f"console-proxy-{uuid.uuid4().hex[:6]}", Role.VIEWER)
    for hops, secure in ((0, False), (1, True)):
        app = create_app(load_settings({**os.environ, "MILLRACE_PROXY_HOPS": str(hops)}), engine, send, revoke)
        signed = app.test_client().post("/sign-in", data={"token": token}, headers={"X-Forwarded-Proto": "https"})
        assert signed.status_code == 302
        cookie = signed.headers["Set-Cookie"]
        assert ("Secure" in cookie) is secure and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_the_graph_shows_a_loops_iterations_and_where_a_break_if_ended_it(console, browser, engine) -> None:
    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-loop-{tag}", Role.DEVELOPER)
    api = _api(console, token)
    api("PUT", f"/flows/console/loop_{tag}", headers={"Content-Type": "application/yaml"}, data=(
        f"id: console/loop_{tag}\nsteps:\n"
        "  - id: count\n    loop:\n      do:\n"
        "        - {id: inc, python: \"def main(n):\\n    return n + 1\\n\", with: {n: \"${{ iteration }}\"},\n"
        "           break_if: \"${{ result >= 3 }}\"}\n"
        "      until: false\n      max_iterations: 10\n"))
    run_id = api("POST", f"/flows/console/loop_{tag}/runs", json={}, params={"wait": 60})["id"]
    page = _signed_in(browser, console, token)
    page.goto(f"{console}/runs/{run_id}")
    summary = page.inner_text("#graph [data-path='count'] > details > summary")
    assert "3 iterations · 3 succeeded" in summary and "ended by the break_if of count[2].inc" in summary
    page.click("#graph [data-path='count'] > details > summary")
    assert page.locator("#graph [data-path='count[2].inc'] .mark-break").count() == 1
    assert page.locator("#graph [data-path='count[1].inc'] .mark-break").count() == 0
    assert "iteration 0" in page.inner_text("#graph [data-path='count']")


def test_event_triggers_show_their_connection_and_last_messages(console, browser, engine) -> None:
    from orchestrator.store import event_triggers
    from tests.integration.event_triggers import doubling_flow

    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-events-{tag}", Role.VIEWER)
    flow_id = f"console/events_{tag}"
    _api(console, create_token(engine, f"console-events-dev-{tag}", Role.DEVELOPER))(
        "PUT", f"/flows/{flow_id}", headers={"Content-Type": "application/yaml"},
        data=doubling_flow(flow_id, f"    amqp: {{queue: console_evt_{tag}}}"))
    trigger = event_triggers.event_trigger_id(flow_id, "events")
    event_triggers.report_state(engine, trigger, "disconnected", "ConnectionRefusedError: [Errno 111] (reconnecting)")
    with engine.begin() as conn:
        event_triggers.record_fire(conn, trigger, "m-1", status="refused", reason="inputs.n: not an integer")
    page = _signed_in(browser, console, token)
    page.goto(f"{console}/schedules?flow={flow_id}")
    card = page.locator(f"section.event-trigger[data-trigger='{trigger}']")
    text = card.inner_text()
    assert "disconnected" in text and "ConnectionRefusedError" in text and "0 started · 1 refused" in text
    assert "m-1" in text and "inputs.n: not an integer" in text and f"queue=console_evt_{tag}" in text


def test_a_person_fills_an_approval_form_through_its_link_and_the_pages_are_accessible(
        console, browser, engine, axe) -> None:
    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-form-{tag}", Role.DEVELOPER)
    api = _api(console, token)
    api("PUT", f"/flows/console/form_{tag}", headers={"Content-Type": "application/yaml"}, data=(
        f"id: console/form_{tag}\nsteps:\n  - id: review\n    approval:\n      description: Refund?\n"
        "      form:\n        amount: {type: integer, required: true, description: cents}\n"
        "        why: {type: enum, enum: [late, damaged]}\n        notify: {type: boolean, default: true}\n"
        "  - {id: after, python: \"def main(r: dict) -> str:\\n    return f\\\"{r['amount'] + 1} {r['why']}\\\"\","
        " with: {r: \"${{ steps.review.result }}\"}}\n"))
    run_id = api("POST", f"/flows/console/form_{tag}/runs", json={})["id"]
    _until(lambda: api("GET", f"/runs/{run_id}/approvals")["items"])
    resume = api("GET", f"/runs/{run_id}/approvals")["items"][0]["links"]["resume"]
    assert resume.startswith(console)  # no MILLRACE_PUBLIC_URL: the URL the listing was asked at
    page = _signed_in(browser, console, token)
    found = {}
    for url in (f"{console}/runs/{run_id}", resume):
        page.goto(url)
        assert page.locator("input[name=amount]").count() == 1
        page.add_script_tag(content=axe)
        violations = page.evaluate("async () => (await axe.run()).violations.map(v => ({id: v.id, impact: v.impact}))")
        found[url] = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not any(found.values()), found
    page.fill("input[name=amount]", "41")
    page.select_option("select[name=why]", "late")
    page.click("button[value=approve]")
    assert "Done: approved" in page.inner_text("main")
    _until(lambda: api("GET", f"/runs/{run_id}")["status"] == "succeeded")
    assert api("GET", f"/runs/{run_id}")["result"] == "42 late"


def test_the_graph_marks_the_step_whose_stop_if_ended_the_run_and_draws_finally(console, browser, engine) -> None:
    tag = uuid.uuid4().hex[:6]
    token = create_token(engine, f"console-endings-{tag}", Role.DEVELOPER)
    api = _api(console, token)
    api("PUT", f"/flows/console/endings_{tag}", headers={"Content-Type": "application/yaml"}, data=(
        f"id: console/endings_{tag}\nsteps:\n"
        "  - {id: check, python: \"def main():\\n    return 0\\n\", stop_if: \"${{ result == 0 }}\"}\n"
        "  - {id: never, bash: echo no}\n"
        "finally:\n  - {id: tidy, bash: echo $S, with: {S: \"${{ run.status }}\"}}\n"))
    run_id = api("POST", f"/flows/console/endings_{tag}/runs", json={}, params={"wait": 60})["id"]
    _until(lambda: api("GET", f"/runs/{run_id}")["status"] == "succeeded")
    page = _signed_in(browser, console, token)
    page.goto(f"{console}/runs/{run_id}")
    graph = page.locator("#graph")
    assert graph.locator("[data-path='check'] .mark-stop").count() == 1
    assert graph.locator("[data-path='never'] .status-pending").count() == 1
    assert graph.locator("[data-path='finally'] [data-path='finally.tidy'] .status-succeeded").count() == 1
    assert "stopped by the stop_if of check" in page.inner_text("main")
