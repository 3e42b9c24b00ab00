"""Postgres advisory locks that elect one process for a job: the sweeper's pass (held for
one pass) and the scheduler's leadership (held for as long as its connection lives)."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import Engine, text

log = logging.getLogger("millrace.leases")
SWEEP = 0x6D696C6C  # "mill"
LEADER = 0x6D696C73  # "mils"
LISTENER = 0x6D696C65  # "mile": the listener's leadership (event triggers)


@contextlib.contextmanager
def held(engine: Engine, key: int) -> Iterator[bool]:
    """Whether this process got ``key`` (released when the block ends); always True off Postgres."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            yield False
            return
        try:
            yield True
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


def is_held(engine: Engine, key: int) -> bool | None:
    """Whether some process of this database holds ``key`` now (None off Postgres: unknown)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND classid = (CAST(:k AS bigint) >> 32)::oid AND objid = (CAST(:k AS bigint) & 4294967295)::oid"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"), {"k": key}).scalar())


class Lease:
    """A session lock held on a connection of its own: whoever holds it leads until the
    connection ends. Keepalives notice a half-open connection in seconds, so a leader cut
    off from the database stops leading and the server frees its lock."""

    def __init__(self, database_url: str, key: int = LEADER):
        self.url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.key = key
        self._conn: psycopg.Connection | None = None
        self._holding = False

    def holding(self) -> bool:
        """Whether this process holds the lock now (taking it if it is free)."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5, keepalives=1,
                                             keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
                                             tcp_user_timeout=10_000)
                self._holding = False
            if self._holding:
                self._conn.execute("SELECT 1")  # still connected: still the holder
                return True
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            self._holding = bool(row and row[0])
            return self._holding
        except psycopg.Error as exc:
            log.warning("lost the database connection holding lock %#x (%s)", self.key, exc)
            self.close()
            return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._holding = False


class FileLease:
    """Local mode's lease (SQLite has no advisory locks): an exclusive lock on a file beside
    the database, held while this process lives; the kernel frees it when the holder dies."""

    def __init__(self, path: str):
        self.path = path
        self._file: Any = None

    def holding(self) -> bool:
        import fcntl

        if self._file is not None:
            return True
        handle = open(self.path, "a")  # noqa: SIM115 - kept open: the lock lives as long as the file
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None


def lease_for(database_url: str, key: int = LEADER) -> Lease | FileLease:
    """A Postgres advisory lease, or for a SQLite file a file lock beside it."""
    if database_url.startswith("sqlite"):
        return FileLease(database_url.split("///", 1)[1] + f".{key:x}.lock")
    return Lease(database_url, key)
