"""The app and the workers connect as a role that owns nothing: migrations run as the
schema's owner (MILLRACE_DATABASE_OWNER_URL) and grant the runtime role what it may do, so
the audit trail is append-only for it for real."""
from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from orchestrator.store import checkpoints
from orchestrator.store.database import make_engine
from tests import services
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    node = services.PrivatePostgres(password="owner-" + os.urandom(6).hex())
    yield node
    node.remove()


def test_the_runtime_role_may_append_to_the_audit_trail_and_nothing_more(cluster) -> None:
    owner_url = cluster.create_database("millrace")
    app_password = "app-" + os.urandom(6).hex()
    with psycopg.connect(cluster.libpq_url("millrace"), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE millrace_app LOGIN PASSWORD '{app_password}'")
    app_url = f"postgresql+psycopg://millrace_app:{app_password}@127.0.0.1:{cluster.port}/millrace"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLRACE_DATABASE")}
    env.update(MILLRACE_DATABASE_URL=app_url, MILLRACE_DATABASE_OWNER_URL=owner_url)
    upgraded = subprocess.run([sys.executable, "-m", "orchestrator.cli", "db", "upgrade"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    # as the app: what Millrace does works (a token made, its audit event appended) ...
    made = subprocess.run([sys.executable, "-m", "orchestrator.cli", "tokens", "create", "--role", "viewer",
                           "--name", "as-app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    app = f"postgresql://millrace_app:{app_password}@127.0.0.1:{cluster.port}/millrace"
    # the scheduler's leader, as the app, seals the chains into a checkpoint
    private, public = checkpoints.new_key_pair()
    sealer = make_engine(app_url)
    assert checkpoints.seal(sealer, checkpoints.private_key(private)).events == 1
    sealer.dispose()
    with psycopg.connect(app, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM audit_events WHERE action = 'token.created'").fetchone()[0] == 1
        # ... and rewriting history does not, however it is tried
        for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events",
                          "TRUNCATE audit_events", "ALTER TABLE audit_events DISABLE TRIGGER ALL",
                          "DROP TRIGGER audit_events_append_only ON audit_events",
                          "UPDATE audit_checkpoints SET signature = 'forged'", "DELETE FROM audit_checkpoints",
                          "TRUNCATE audit_checkpoints", "ALTER TABLE audit_checkpoints DISABLE TRIGGER ALL",
                          "DELETE FROM audit_events WHERE seq = 1", "DELETE FROM audit_checkpoints WHERE seq = 1",
                          "DELETE FROM audit_purges", "UPDATE audit_purges SET actor = 'mallory'",
                          "INSERT INTO audit_purges (seq, at, actor, through_checkpoint, checkpoint_hash, cut, events, "
                          "hash, signature) VALUES (1, now(), 'mallory', 1, '', '[]', 1, '', '')",
                          "UPDATE alembic_version SET version_num = '0001'",
                          "CREATE TABLE intruder (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # not only the triggers refuse it: the grants do, before any trigger runs
        assert conn.execute("SELECT has_table_privilege('audit_events', 'DELETE') OR has_table_privilege("
                            "'audit_checkpoints', 'DELETE') OR has_table_privilege('audit_purges', 'INSERT')"
                            ).fetchone()[0] is False
    with psycopg.connect(cluster.libpq_url("millrace"), autocommit=True) as conn:
        assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_events'").fetchone()[0] \
            == "postgres"
    # the owner purges (a whole checkpoint, recorded and signed), and the app's verify still passes
    env.update(MILLRACE_AUDIT_KEY=private, MILLRACE_AUDIT_PUBLIC_KEY=public)
    purged = subprocess.run([sys.executable, "-m", "orchestrator.cli", "audit", "purge", "--older-than", "0s"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert purged.returncode == 0 and "purged 1 audit event(s) sealed by 1 checkpoint(s)" in purged.stdout, \
        purged.stderr
    verified = subprocess.run([sys.executable, "-m", "orchestrator.cli", "audit", "verify"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and "1 events purged by retention with checkpoints 1..1" in verified.stdout, \
        verified.stderr
    with psycopg.connect(app, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM audit_events WHERE action = 'token.created'").fetchone()[0] == 0
