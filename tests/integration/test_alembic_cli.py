"""Alembic's own command line, from the repository root, on a database of its own."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PG = os.environ.get("MILLRACE_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
ALEMBIC = shutil.which("alembic", path=str(Path(sys.executable).parent))


def alembic(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [ALEMBIC] if ALEMBIC else [sys.executable, "-m", "alembic"]
    return subprocess.run([*command, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def environment(**given: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MILLRACE_DATABASE_URL", "MILLRACE_DATABASE_OWNER_URL")}
    return {**env, **given}


@pytest.fixture(scope="module")
def scratch_url():
    name = f"millrace_alembic_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG.split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    (head,) = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_heads()
    return head


def test_upgrade_head_then_current_names_the_head(scratch_url: str) -> None:
    env = environment(MILLRACE_DATABASE_URL=scratch_url)
    upgraded = alembic("upgrade", "head", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    current = alembic("current", env=env)
    assert current.returncode == 0, current.stderr
    assert current.stdout.split() == [head_revision(), "(head)"]


def test_the_models_need_no_migration_the_revisions_lack(scratch_url: str) -> None:
    env = environment(MILLRACE_DATABASE_URL=scratch_url)
    assert alembic("upgrade", "head", env=env).returncode == 0
    checked = alembic("check", env=env)  # autogenerate's comparison, writing no file
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_owner_url_is_preferred_to_the_runtime_url(scratch_url: str) -> None:
    env = environment(MILLRACE_DATABASE_OWNER_URL=scratch_url,
                      MILLRACE_DATABASE_URL=f"postgresql+psycopg://{PG.split('://', 1)[1]}/no_such_database")
    upgraded = alembic("upgrade", "head", env=env)  # no such database: it would fail
    assert upgraded.returncode == 0, upgraded.stderr
    current = alembic("current", env=env)
    assert current.returncode == 0, current.stderr
    assert current.stdout.split() == [head_revision(), "(head)"]


def test_with_no_database_named_it_says_what_to_set() -> None:
    refused = alembic("current", env=environment())
    assert refused.returncode != 0
    assert "set MILLRACE_DATABASE_URL" in refused.stdout + refused.stderr
