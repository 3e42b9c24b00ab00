"""SQL steps: one statement against a PostgreSQL database, ``with`` values bound as
``%(name)s`` parameters (psycopg sends them apart from the text: never interpolated).

A query's result is ``{"rows": [...], "row_count": N, "truncated": bool, "row_limit": L}``
with at most L rows (each an object by column name); a statement without rows (DDL, DML)
gives ``{"rows": [], "affected": N}``. The step's timeout is the statement timeout.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import time
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from orchestrator.executors.base import Execution, StepCall


class SqlExecutor:
    def __init__(self, row_limit: int = 1000):
        self.row_limit = row_limit

    def run(self, call: StepCall) -> Execution:
        """Run one statement on ``call.database_url``, ``call.args`` bound as parameters."""
        statement, args, url, timeout = call.code, call.args, call.database_url, call.timeout
        started = time.perf_counter()
        if not url:
            return Execution(False, None, "an sql step needs a database URL", "", 0.0)
        try:
            with psycopg.connect(_libpq(url), connect_timeout=10, autocommit=False) as conn:
                if timeout:
                    conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout * 1000)}",))
                with conn.cursor(row_factory=dict_row) as cursor:
                    cursor.execute(statement, args)
                    if cursor.description is None:
                        result: dict[str, Any] = {"rows": [], "affected": cursor.rowcount}
                    else:
                        rows = cursor.fetchmany(self.row_limit + 1)
                        truncated = len(rows) > self.row_limit
                        rows = rows[:self.row_limit]
                        result = {"rows": [{k: _plain(v) for k, v in row.items()} for row in rows],
                                  "row_count": len(rows), "truncated": truncated, "row_limit": self.row_limit}
                conn.commit()
        except psycopg.errors.QueryCanceled:
            return Execution(False, None, f"timed out after {timeout:g}s (statement_timeout)", "",
                             time.perf_counter() - started, timed_out=True)
        except KeyError as exc:
            return Execution(False, None, f"the statement uses %({exc.args[0]})s but `with` has no "
                             f"'{exc.args[0]}'", "", time.perf_counter() - started)
        except (psycopg.Error, ValueError, TypeError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Execution(False, None, f"{type(exc).__name__}: {message}", "", time.perf_counter() - started)
        return Execution(True, result, None, "", time.perf_counter() - started)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _plain(value: Any) -> Any:
    """A column value as JSON keeps it: numbers stay numbers, times become ISO 8601 text."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
