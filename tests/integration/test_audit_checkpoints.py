"""Each run's events chain within the run, every other event in the system chain, and signed
checkpoints seal the chains' heads: what a writer of the database can no longer fake. As in
test_audit_chain.py, tampering happens in a database of its own, as a superuser with the
guard triggers switched off."""
from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import exc, text

from orchestrator.store import audit, checkpoints
from orchestrator.store.access import Role, create_token
from orchestrator.store.verification import verify
from tests.conftest import LOGS, ROOT

pytestmark = pytest.mark.integration

PRIVATE, PUBLIC = checkpoints.new_key_pair()
KEY, PUBLIC_KEY = checkpoints.private_key(PRIVATE), checkpoints.public_key(PUBLIC)
CANONICAL = """jsonb_build_array(coalesce(e.prev_hash, ''), e.seq,
    to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), e.actor, e.action, e.target, e.details)::text"""


def write(engine, target: str, count: int) -> None:
    for i in range(count):
        with engine.begin() as conn:
            audit.audit(conn, "test", "step.started", target, path=f"s{i}")


def as_superuser(engine, statement: str) -> None:
    with engine.begin() as conn:
        for table in ("audit_events", "audit_checkpoints", "audit_purges"):
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        conn.execute(text(statement))
        for table in ("audit_events", "audit_checkpoints", "audit_purges"):
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def rewrite_and_recompute(engine, chain: str, seq: int) -> None:
    """What the app's database rights allowed before checkpoints: change an event, then recompute
    every hash after it (and the chain's head) so that the chain is whole again."""
    as_superuser(engine, f"""
DO $$
DECLARE r record; previous text;
BEGIN
    UPDATE audit_events SET actor = 'mallory' WHERE chain = '{chain}' AND seq = {seq};
    SELECT hash INTO previous FROM audit_events WHERE chain = '{chain}' AND seq = {seq - 1};
    FOR r IN SELECT id FROM audit_events WHERE chain = '{chain}' AND seq >= {seq} ORDER BY seq LOOP
        UPDATE audit_events SET prev_hash = previous WHERE id = r.id;
        UPDATE audit_events e SET hash = encode(sha256(convert_to({CANONICAL}, 'UTF8')), 'hex')
            WHERE e.id = r.id RETURNING hash INTO previous;
    END LOOP;
    UPDATE audit_chains SET hash = previous WHERE chain = '{chain}';  -- the next event links to it
END $$""")


def test_a_runs_events_chain_within_the_run_and_the_rest_in_the_system_chain(chain_db) -> None:
    create_token(chain_db, "robot", Role.VIEWER, actor="test")
    write(chain_db, "run:one", 3)
    write(chain_db, "run:two", 2)
    write(chain_db, "flow:billing/daily", 1)
    with chain_db.connect() as conn:
        rows = conn.execute(text("SELECT chain, seq, target FROM audit_events ORDER BY id")).all()
    assert [(r.chain, r.seq) for r in rows] == [
        ("system", 1), ("run:one", 1), ("run:one", 2), ("run:one", 3), ("run:two", 1), ("run:two", 2), ("system", 2)]
    assert verify(chain_db).ok


def test_writers_of_two_runs_do_not_wait_on_each_other(chain_db) -> None:
    write(chain_db, "run:one", 1)
    write(chain_db, "run:two", 1)
    with chain_db.connect() as holder, chain_db.connect() as other, chain_db.connect() as same:
        holder.begin()
        audit.audit(holder, "a", "step.started", "run:one")  # holds run:one's head until it commits
        other.begin()
        other.execute(text("SET LOCAL lock_timeout = '5s'"))  # were it to wait, it would fail
        audit.audit(other, "b", "step.started", "run:two")  # another run: nothing to wait for
        with chain_db.connect() as watcher:
            assert watcher.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar() == 0
        other.commit()
        # a writer of the same run queues behind the holder (seen in pg_locks), then goes on
        same_pid = same.execute(text("SELECT pg_backend_pid()")).scalar()
        writer = threading.Thread(target=lambda: (audit.audit(same, "c", "step.started", "run:one"), same.commit()))
        writer.start()
        with chain_db.connect() as watcher:
            while not watcher.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = :pid"),
                                      {"pid": same_pid}).scalar():
                assert writer.is_alive()
                time.sleep(0.01)
        holder.commit()
        writer.join(30)
    with chain_db.connect() as conn:
        assert conn.execute(text("SELECT chain, seq, actor FROM audit_events WHERE seq > 1 ORDER BY id")).all() == [
            ("run:one", 2, "a"), ("run:two", 2, "b"), ("run:one", 3, "c")]
    assert verify(chain_db).ok


def test_a_chain_rewritten_with_recomputed_hashes_is_caught_once_a_checkpoint_seals_it(chain_db) -> None:
    write(chain_db, "run:one", 5)
    write(chain_db, "run:two", 2)
    rewrite_and_recompute(chain_db, "run:one", 3)
    assert verify(chain_db, PUBLIC_KEY).ok  # the window: what no checkpoint sealed yet goes unseen
    sealed = checkpoints.seal(chain_db, KEY)
    assert sealed.seq == 1 and sealed.events == 7 and [h["chain"] for h in sealed.heads] == ["run:one", "run:two"]
    assert checkpoints.seal(chain_db, KEY) is None  # nothing moved since
    write(chain_db, "run:one", 1)
    assert checkpoints.seal(chain_db, KEY).heads == [{"chain": "run:one", "seq": 6, "hash": sealed_hash(chain_db)}]
    verdict = verify(chain_db, PUBLIC_KEY)
    assert verdict.ok and (verdict.events, verdict.checkpoints, verdict.unsealed) == (8, 2, 0)
    rewrite_and_recompute(chain_db, "run:one", 2)
    verdict = verify(chain_db, PUBLIC_KEY)
    assert not verdict.ok and (verdict.checkpoint, verdict.chain, verdict.broken_at) == (1, "run:one", 5)
    assert "sealed by checkpoint #1, has another hash" in verdict.reason


def sealed_hash(engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT hash FROM audit_chains WHERE chain = 'run:one'")).scalar()


def test_a_forged_or_changed_checkpoint_is_caught(chain_db) -> None:
    write(chain_db, "run:one", 2)
    checkpoints.seal(chain_db, KEY)
    write(chain_db, "run:two", 2)
    checkpoints.seal(chain_db, KEY)
    assert verify(chain_db, PUBLIC_KEY).ok
    other = checkpoints.public_key(checkpoints.new_key_pair()[1])
    verdict = verify(chain_db, other)  # signed by a key that is not the installation's
    assert not verdict.ok and verdict.checkpoint == 1 and "signature is not the audit key's" in verdict.reason
    # a checkpoint re-sealed over a recomputed chain, hash and all, but without the key
    forged = checkpoints.checkpoint_hash(None, 1, dt_of(chain_db, 1), [{"chain": "run:one", "seq": 2, "hash": "0"}])
    as_superuser(chain_db, f"""UPDATE audit_checkpoints SET hash = '{forged}',
        heads = '[{{"chain": "run:one", "seq": 2, "hash": "0"}}]' WHERE seq = 1""")
    verdict = verify(chain_db, PUBLIC_KEY)
    assert not verdict.ok and verdict.checkpoint == 1 and "signature" in verdict.reason
    assert "prev_hash is not the hash of the checkpoint before it" in verify(chain_db).reason  # and #2 no longer links


def dt_of(engine, seq: int):
    with engine.connect() as conn:
        return conn.execute(text("SELECT at FROM audit_checkpoints WHERE seq = :s"), {"s": seq}).scalar()


def test_a_dropped_checkpoint_is_caught_and_the_newest_through_the_file(chain_db, tmp_path) -> None:
    kept = tmp_path / "checkpoints.jsonl"
    for target in ("run:one", "run:two", "run:three"):
        write(chain_db, target, 1)
        checkpoints.seal(chain_db, KEY, kept)
    assert [line["seq"] for line in checkpoints.read_file(kept)] == [1, 2, 3]
    assert verify(chain_db, PUBLIC_KEY, kept).ok
    as_superuser(chain_db, "DELETE FROM audit_checkpoints WHERE seq = 3")
    assert verify(chain_db, PUBLIC_KEY).ok  # the newest one gone leaves nothing in the database to miss it
    verdict = verify(chain_db, PUBLIC_KEY, kept)
    assert not verdict.ok and verdict.checkpoint == 3 and "not in the database (dropped)" in verdict.reason
    as_superuser(chain_db, "DELETE FROM audit_checkpoints WHERE seq = 1")
    verdict = verify(chain_db, PUBLIC_KEY)
    assert not verdict.ok and verdict.checkpoint == 2 and "checkpoints 1..1 are missing" in verdict.reason


@pytest.mark.parametrize(("statement", "broken_at", "reason"), [
    ("DELETE FROM audit_events WHERE chain = 'run:b' AND seq = 2", 3, "events 2..2 are missing"),
    ("UPDATE audit_events SET seq = -seq WHERE chain = 'run:b' AND seq IN (2, 3);"
     "UPDATE audit_events SET seq = 5 + seq WHERE chain = 'run:b' AND seq < 0", 2, "prev_hash is not"),  # swapped
    ("UPDATE audit_events SET details = '{}' WHERE chain = 'run:b' AND seq = 2", 2, "no longer match its hash"),
])
def test_verify_names_the_first_break_in_a_runs_chain(chain_db, statement, broken_at, reason) -> None:
    for target in ("run:a", "run:b", "run:c"):
        write(chain_db, target, 4)
    as_superuser(chain_db, statement)
    verdict = verify(chain_db)
    assert not verdict.ok and reason in verdict.reason
    assert (verdict.chain, verdict.broken_at, verdict.events) == ("run:b", broken_at, 5)  # run:a's 4, run:b's 1st


def test_the_api_pages_every_chain_in_one_stable_order(chain_db) -> None:
    from api import create_app
    from config.settings import load_settings
    from orchestrator.cli.wiring import revoke, send

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda target: write(chain_db, target, 12), ["run:a", "run:b", "run:c", "run:d", "var:x"]))
    client = create_app(load_settings(), chain_db, send, revoke).test_client()
    headers = {"Authorization": f"Bearer {create_token(chain_db, 'reader', Role.VIEWER, actor='test')}"}
    pages, cursor = [], None
    while True:
        asked = {"limit": 7, "action": "step.", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/audit", query_string=asked, headers=headers).json
        pages.append([e["id"] for e in page["items"]])
        if not (cursor := page["next_cursor"]):
            break
    ids = [i for page in pages for i in page]
    assert len(ids) == 60 and ids == sorted(set(ids))  # every event once, oldest first, across the chains
    again = client.get("/api/v1/audit", query_string={"limit": 7, "action": "step.", "cursor": pages[0][-1]},
                       headers=headers).json
    assert [e["id"] for e in again["items"]] == pages[1]


def test_the_schedulers_leader_seals_checkpoints_every_few_seconds(chain_db, tmp_path) -> None:
    kept = tmp_path / "checkpoints.jsonl"
    LOGS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MILLRACE_DATABASE_URL=chain_db.url.render_as_string(hide_password=False),
               MILLRACE_AUDIT_KEY=PRIVATE, MILLRACE_AUDIT_CHECKPOINT_S="0.5", MILLRACE_AUDIT_CHECKPOINT_FILE=str(kept))
    with open(LOGS / "scheduler-audit.log", "w") as log:
        scheduler = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "scheduler"], cwd=ROOT, env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for burst, target in enumerate(["run:one", "run:two", "token:robot"], start=1):
                with chain_db.begin() as conn:  # all three or none in a checkpoint
                    for i in range(3):
                        audit.audit(conn, "test", "thing.done", target, n=i)
                deadline = time.monotonic() + 30
                while len(checkpoints.read_file(kept)) < burst:
                    assert time.monotonic() < deadline and scheduler.poll() is None, "no checkpoint sealed"
                    time.sleep(0.1)
        finally:
            os.killpg(scheduler.pid, signal.SIGTERM)
            scheduler.wait(30)
    lines = checkpoints.read_file(kept)
    assert [(line["seq"], line["events"]) for line in lines] == [(1, 3), (2, 3), (3, 3)]
    verdict = verify(chain_db, PUBLIC_KEY, kept)
    assert verdict.ok and (verdict.checkpoints, verdict.unsealed) == (3, 0) and verdict.signatures


def test_the_app_cannot_change_or_remove_a_checkpoint(chain_db) -> None:
    write(chain_db, "run:one", 1)
    checkpoints.seal(chain_db, KEY)
    for statement in ("UPDATE audit_checkpoints SET signature = 'x'", "DELETE FROM audit_checkpoints",
                      "TRUNCATE audit_checkpoints"):
        with pytest.raises(exc.DBAPIError, match="append-only"), chain_db.begin() as conn:
            conn.execute(text(statement))
    assert verify(chain_db, PUBLIC_KEY).ok


def test_keygen_and_verify_on_the_command_line(chain_db, capsys, monkeypatch, tmp_path) -> None:
    from orchestrator.cli.main import main

    assert main(["audit", "keygen"]) == 0
    pair = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if not line.startswith("#"))
    kept = tmp_path / "checkpoints.jsonl"
    write(chain_db, "run:one", 3)
    checkpoints.seal(chain_db, checkpoints.private_key(pair["MILLRACE_AUDIT_KEY"]), kept)
    write(chain_db, "run:one", 1)
    monkeypatch.setenv("MILLRACE_DATABASE_URL", chain_db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("MILLRACE_AUDIT_CHECKPOINT_FILE", str(kept))
    monkeypatch.setenv("MILLRACE_AUDIT_PUBLIC_KEY", pair["MILLRACE_AUDIT_PUBLIC_KEY"])
    assert main(["audit", "verify"]) == 0
    assert ("audit chain intact: 4 events, 1 checkpoints (signatures checked); 1 events not sealed by a checkpoint yet"
            in capsys.readouterr().out)
    monkeypatch.setenv("MILLRACE_AUDIT_PUBLIC_KEY", PUBLIC)  # another installation's key
    assert main(["audit", "verify"]) == 1
    assert "audit chain broken at checkpoint #1: its signature is not the audit key's" in capsys.readouterr().err


def test_bench_audit_writes_chains_that_verify(chain_db, capsys, monkeypatch) -> None:
    from orchestrator.cli.main import main

    monkeypatch.setenv("MILLRACE_DATABASE_URL", chain_db.url.render_as_string(hide_password=False))
    assert main(["bench", "audit", "--clients", "4", "--seconds", "0.5"]) == 0
    assert "audit events/s at 4 clients (a chain each)" in capsys.readouterr().out
    with chain_db.connect() as conn:
        assert conn.execute(text("SELECT count(DISTINCT chain) FROM audit_events WHERE action = 'bench.audit'")
                            ).scalar() == 4
    assert verify(chain_db).ok
