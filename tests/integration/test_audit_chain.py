"""The audit trail is append-only and hash-chained; `millrace audit verify` names the
first broken link. Tampering happens in a database of its own, as a superuser with the
guard trigger switched off: what an attacker with the keys could do, and what verify sees."""
from __future__ import annotations

import concurrent.futures

import pytest
from sqlalchemy import exc, text

from orchestrator.store import audit
from orchestrator.store.verification import verify

pytestmark = pytest.mark.integration


def write_events(engine, count: int, actor: str = "test") -> None:
    for i in range(count):
        with engine.begin() as conn:
            audit.audit(conn, actor, "thing.done", f"thing:{i}", n=i, note="ünïcode ✓")


def tamper(engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        conn.execute(text(statement))
        conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))


def test_the_app_cannot_change_or_remove_an_event(engine, run_flow) -> None:
    run_flow("id: audit/touch\nsteps:\n  - {id: a, bash: echo}\n")
    for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events",
                      "TRUNCATE audit_events"):
        with pytest.raises(exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    verdict = verify(engine)
    assert verdict.ok and verdict.events > 0


def test_concurrent_writers_extend_one_unbroken_chain(chain_db) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: write_events(chain_db, 40, f"writer-{k}"), range(8)))
    verdict = verify(chain_db)
    assert verdict.ok and verdict.events == 320


@pytest.mark.parametrize(("statement", "broken_at", "reason"), [
    ("UPDATE audit_events SET details = '{\"n\": 999}' WHERE seq = 6", 6, "no longer match its hash"),
    ("UPDATE audit_events SET actor = 'mallory', hash = 'f00d' WHERE seq = 6", 6, "no longer match its hash"),
    ("DELETE FROM audit_events WHERE seq = 6", 7, "events 6..6 are missing"),
    ("UPDATE audit_events SET prev_hash = NULL WHERE seq = 6", 6, "prev_hash is not the hash"),
])
def test_verify_names_the_first_broken_link(chain_db, statement, broken_at, reason) -> None:
    write_events(chain_db, 10)
    assert verify(chain_db).ok
    tamper(chain_db, statement)
    verdict = verify(chain_db)
    assert not verdict.ok and reason in verdict.reason
    assert verdict.broken_at == broken_at and verdict.events == 5


def test_audit_verify_on_the_command_line(chain_db, capsys, monkeypatch) -> None:
    from orchestrator.cli.main import main

    write_events(chain_db, 3)
    monkeypatch.setenv("MILLRACE_DATABASE_URL", chain_db.url.render_as_string(hide_password=False))
    assert main(["audit", "verify"]) == 0
    assert "audit chain intact: 3 events" in capsys.readouterr().out
    tamper(chain_db, "UPDATE audit_events SET target = 'thing:x' WHERE seq = 2")
    assert main(["audit", "verify"]) == 1
    assert "broken at event #2" in capsys.readouterr().err


def test_every_step_transition_is_an_event_of_its_run(engine, run_flow) -> None:
    run = run_flow("""
id: audit/steps
steps:
  - {id: a, bash: echo a}
  - {id: b, if: "${{ false }}", bash: echo b}
  - id: c
    python: "def main():\\n    raise ValueError('boom')"
    continue_on_error: true
""")
    events = [(e["action"], e["details"].get("path"), e["details"].get("error"))
              for e in audit.list_audit(engine, target=f"run:{run.id}")]
    assert events == [
        ("run.created", None, None), ("run.started", None, None),
        ("step.started", "a", None), ("step.succeeded", "a", None),
        ("step.skipped", "b", None),
        ("step.started", "c", None), ("step.failed", "c", "ValueError: boom"),
        (f"run.{run.status}", None, None)]
    step_events = audit.list_audit(engine, target=f"run:{run.id}", action="step.")
    assert all(e["actor"] == run.steps[0].worker for e in step_events)  # the worker that ran it
    assert verify(engine).ok
