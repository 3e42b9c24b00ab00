"""Audit events have a retention of their own: the oldest checkpoints go with every event they
sealed, never part of one, each purge recorded and signed, so that verify of what remains still
passes, and still catches an event changed, deleted or reordered, or a range passed off as purged.
As in test_audit_checkpoints.py, tampering happens in a database of its own, as a superuser with
the guard triggers switched off; there the app's role is the owner (the owner-only rule itself is
in test_database_roles.py)."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import exc, text

from orchestrator.errors import Conflict
from orchestrator.services.audit_retention import purge
from orchestrator.store import audit_purges, checkpoints
from orchestrator.store.access import Role, create_token
from orchestrator.store.verification import verify
from tests.conftest import LOGS, ROOT
from tests.integration.test_audit_checkpoints import (
    KEY,
    PRIVATE,
    PUBLIC,
    PUBLIC_KEY,
    as_superuser,
    rewrite_and_recompute,
    write,
)

pytestmark = pytest.mark.integration
LATER = dt.timedelta(hours=1)


def counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                     for table in ("audit_events", "audit_checkpoints", "audit_purges"))


def chain(engine, name: str) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT seq FROM audit_events WHERE chain = :c ORDER BY seq"), {"c": name})
                    .scalars())


@pytest.fixture
def trail(chain_db, tmp_path):
    """Checkpoint #1 seals run:one 1..3 and run:two 1..2; #2 seals run:one 4..5; #3 the system
    chain's token event; run:one's 6th event is sealed by none. Returns (engine, file, #2)."""
    kept = tmp_path / "checkpoints.jsonl"
    write(chain_db, "run:one", 3)
    write(chain_db, "run:two", 2)
    checkpoints.seal(chain_db, KEY, kept)
    write(chain_db, "run:one", 2)
    second = checkpoints.seal(chain_db, KEY, kept)
    create_token(chain_db, "robot", Role.VIEWER, actor="test")
    checkpoints.seal(chain_db, KEY, kept)
    write(chain_db, "run:one", 1)
    return chain_db, kept, second


def test_a_purge_takes_whole_checkpoints_older_than_the_cut_and_what_remains_verifies(trail) -> None:
    engine, kept, second = trail
    before = counts(engine)
    dry = purge(engine, second.at, key=None, actor="test", dry_run=True)
    assert (dry.events, dry.checkpoints) == (5, 1) and counts(engine) == before  # a dry run deletes nothing

    # run:one's 4th and 5th events are older than the cut, but their checkpoint is not: they stay
    found = purge(engine, second.at, key=KEY, actor="ops")
    assert (found.events, found.checkpoints, found.batches) == (5, 1, [5])
    assert chain(engine, "run:one") == [4, 5, 6] and chain(engine, "run:two") == []
    with engine.connect() as conn:
        record = list(audit_purges.walk(conn))[0]
        event = conn.execute(text("SELECT actor, details FROM audit_events WHERE action = 'audit.purged'")).one()
    assert (record.through_checkpoint, record.events, record.actor) == (1, 5, "ops")
    assert [(c["chain"], c["seq"]) for c in record.cut] == [("run:one", 3), ("run:two", 2)]
    assert event.actor == "ops" and event.details == {"purge": 1, "checkpoints": [1, 1], "events": 5, "chains": 2}
    verdict = verify(engine, PUBLIC_KEY, kept)
    assert verdict.ok, verdict.reason
    assert (verdict.events, verdict.checkpoints, verdict.purged, verdict.purged_through) == (5, 2, 5, 1)
    assert verdict.unsealed == 2  # run:one's 6th event and the purge's own event

    # later: everything sealed goes, what no checkpoint sealed yet stays (the purge's own event too)
    found = purge(engine, dt.datetime.now(dt.UTC) + LATER, key=KEY, actor="ops", batch=1)
    assert (found.events, found.checkpoints, found.batches) == (3, 2, [2, 1])  # one checkpoint per batch
    assert chain(engine, "run:one") == [6]
    verdict = verify(engine, PUBLIC_KEY, kept)
    assert verdict.ok and (verdict.checkpoints, verdict.purged, verdict.purged_through) == (0, 8, 3)
    assert checkpoints.seal(engine, KEY, kept).seq == 4  # the next checkpoint goes on from the last one purged
    verdict = verify(engine, PUBLIC_KEY, kept)
    assert verdict.ok and (verdict.checkpoints, verdict.unsealed) == (1, 0) and counts(engine)[2] == 3


def test_the_audit_pages_and_their_cursor_keep_working_across_a_purge(trail) -> None:
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    engine, _, second = trail
    client = create_app(load_settings(), engine, send, revoke).test_client()
    headers = {"Authorization": f"Bearer {create_token(engine, 'reader', Role.VIEWER, actor='test')}"}
    first = client.get("/api/v1/audit", query_string={"limit": 2, "action": "step."}, headers=headers).json
    purge(engine, second.at, key=KEY, actor="ops")
    page = client.get("/api/v1/audit", query_string={"limit": 2, "action": "step.", "cursor": first["next_cursor"]},
                      headers=headers)
    assert page.status_code == 200
    with engine.connect() as conn:
        left = conn.execute(text("SELECT id FROM audit_events WHERE action = 'step.started' ORDER BY id")).scalars()
        assert [e["id"] for e in page.json["items"]] == list(left)[:2]  # the purged ones skipped, nothing lost


@pytest.mark.parametrize(("statement", "reason"), [
    ("UPDATE audit_events SET actor = 'mallory' WHERE chain = 'run:one' AND seq = 5", "no longer match its hash"),
    ("DELETE FROM audit_events WHERE chain = 'run:one' AND seq = 4", "events 4..4 are missing"),
    ("UPDATE audit_events SET seq = -seq WHERE chain = 'run:one' AND seq IN (4, 5);"
     "UPDATE audit_events SET seq = 9 + seq WHERE chain = 'run:one' AND seq < 0", "prev_hash is not"),  # swapped
    ("DELETE FROM audit_purges", "events 1..3 are missing"),  # the purge record dropped
    ("DELETE FROM audit_checkpoints WHERE seq = 2", "checkpoints 2..2 are missing (dropped: no purge recorded"),
    ("DELETE FROM audit_checkpoints WHERE seq = 3", "checkpoints 3..3 are missing (dropped)"),  # a middle range
    ("UPDATE audit_purges SET events = 4", "what it records no longer matches its hash"),
])
def test_verify_still_catches_tampering_after_a_purge(trail, statement, reason) -> None:
    engine, _, second = trail
    write(engine, "run:two", 1)
    checkpoints.seal(engine, KEY)  # #4: so that #3 is in the middle
    purge(engine, second.at, key=KEY, actor="ops")
    as_superuser(engine, statement)
    verdict = verify(engine, PUBLIC_KEY)
    assert not verdict.ok and reason in verdict.reason


def test_a_chain_rewritten_after_a_purge_is_caught_by_the_checkpoint_that_sealed_it(trail) -> None:
    engine, _, second = trail
    purge(engine, second.at, key=KEY, actor="ops")
    rewrite_and_recompute(engine, "run:one", 5)
    verdict = verify(engine, PUBLIC_KEY)
    assert not verdict.ok and "sealed by checkpoint #2, has another hash" in verdict.reason


def test_a_forged_purge_record_is_caught_by_its_signature(trail) -> None:
    engine, _, second = trail
    purge(engine, second.at, key=KEY, actor="ops")
    with engine.connect() as conn:
        record = list(audit_purges.walk(conn))[0]
        fourth = conn.execute(text("SELECT hash FROM audit_events WHERE chain = 'run:one' AND seq = 4")).scalar()
    # whoever can write the database deletes run:one's 4th event and moves the cut over it,
    # with the record's hash recomputed: only the audit key could sign it
    cut = [{"chain": "run:one", "seq": 4, "hash": fourth}, record.cut[1]]
    forged = audit_purges.purge_hash(None, 1, record.at, record.actor, 1, record.checkpoint_hash, cut, record.events)
    as_superuser(engine, "DELETE FROM audit_events WHERE chain = 'run:one' AND seq = 4;"
                         f"UPDATE audit_purges SET cut = '{json.dumps(cut)}', hash = '{forged}'")
    verdict = verify(engine, PUBLIC_KEY)
    assert not verdict.ok and verdict.purge == 1 and "signature is not the audit key's" in verdict.reason
    assert verify(engine).ok  # what only the signature tells: verify needs MILLRACE_AUDIT_PUBLIC_KEY for it


def test_a_purge_refuses_to_delete_a_break_and_deletes_nothing(trail) -> None:
    engine, _, second = trail
    as_superuser(engine, "UPDATE audit_events SET details = '{}' WHERE chain = 'run:two' AND seq = 1")
    before = counts(engine)
    with pytest.raises(Conflict, match="refused: event id .* does not fit its chain"):
        purge(engine, second.at, key=KEY, actor="ops")
    assert counts(engine) == before
    as_superuser(engine, "DELETE FROM audit_checkpoints WHERE seq = 1")
    with pytest.raises(Conflict, match=r"checkpoints #1..#1 are missing, and no purge recorded them"):
        purge(engine, dt.datetime.now(dt.UTC) + LATER, key=KEY, actor="ops")
    assert counts(engine)[0] == before[0]


def test_even_the_owner_deletes_only_what_a_recorded_purge_covers(trail) -> None:
    engine, _, _ = trail
    for statement, refused in (
            ("DELETE FROM audit_checkpoints WHERE seq = 1", "covered by no recorded purge"),
            ("DELETE FROM audit_events WHERE chain = 'run:one' AND seq = 6", "sealed by no checkpoint"),
            ("UPDATE audit_events SET actor = 'x' WHERE chain = 'run:one' AND seq = 1", "append-only"),
            ("TRUNCATE audit_events", "append-only")):
        with pytest.raises(exc.DBAPIError, match=refused), engine.begin() as conn:
            conn.execute(text(statement))
    purge(engine, dt.datetime.now(dt.UTC) + LATER, key=KEY, actor="ops")
    for statement in ("DELETE FROM audit_purges", "UPDATE audit_purges SET actor = 'x'", "TRUNCATE audit_purges"):
        with pytest.raises(exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert verify(engine, PUBLIC_KEY).ok


def test_the_command_line_purges_with_the_owners_url_and_says_what_it_needs(trail, capsys, monkeypatch) -> None:
    from orchestrator.cli.main import main

    engine, kept, _ = trail
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("MILLRACE_DATABASE_URL", url)
    monkeypatch.delenv("MILLRACE_DATABASE_OWNER_URL", raising=False)
    monkeypatch.delenv("MILLRACE_AUDIT_KEY", raising=False)
    assert main(["audit", "purge", "--older-than", "0s"]) == 2
    assert "set MILLRACE_DATABASE_OWNER_URL" in capsys.readouterr().err
    assert main(["audit", "purge", "--older-than", "0s", "--dry-run"]) == 0
    assert "would purge 8 audit event(s) sealed by 3 checkpoint(s)" in capsys.readouterr().out
    monkeypatch.setenv("MILLRACE_DATABASE_OWNER_URL", url)
    assert main(["audit", "purge", "--older-than", "0s"]) == 2
    assert "set MILLRACE_AUDIT_KEY" in capsys.readouterr().err
    monkeypatch.setenv("MILLRACE_AUDIT_KEY", PRIVATE)
    assert main(["audit", "purge", "--older-than", "400d"]) == 0
    assert "purged 0 audit event(s) sealed by 0 checkpoint(s)" in capsys.readouterr().out
    assert main(["audit", "purge", "--older-than", "0s"]) == 0
    assert "purged 8 audit event(s) sealed by 3 checkpoint(s)" in capsys.readouterr().out
    monkeypatch.setenv("MILLRACE_AUDIT_CHECKPOINT_FILE", str(kept))
    monkeypatch.setenv("MILLRACE_AUDIT_PUBLIC_KEY", PUBLIC)
    assert main(["audit", "verify"]) == 0
    assert "8 events purged by retention with checkpoints 1..3" in capsys.readouterr().out


def test_the_schedulers_leader_purges_audit_events_past_their_retention(chain_db, tmp_path) -> None:
    kept = tmp_path / "checkpoints.jsonl"
    url = chain_db.url.render_as_string(hide_password=False)
    write(chain_db, "run:old", 3)
    LOGS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MILLRACE_DATABASE_URL=url, MILLRACE_DATABASE_OWNER_URL=url, MILLRACE_AUDIT_KEY=PRIVATE,
               MILLRACE_AUDIT_CHECKPOINT_S="0.5", MILLRACE_AUDIT_CHECKPOINT_FILE=str(kept),
               MILLRACE_AUDIT_RETENTION="2s", MILLRACE_RETENTION_INTERVAL_S="1")
    with open(LOGS / "scheduler-audit-retention.log", "w") as log:
        scheduler = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "scheduler"], cwd=ROOT, env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while chain(chain_db, "run:old"):
                assert time.monotonic() < deadline and scheduler.poll() is None, "the leader purged nothing"
                time.sleep(0.2)
        finally:
            os.killpg(scheduler.pid, signal.SIGTERM)
            scheduler.wait(30)
    with chain_db.connect() as conn:
        assert list(audit_purges.walk(conn))[0].cut[0]["chain"] == "run:old"
    assert verify(chain_db, PUBLIC_KEY, kept).ok
