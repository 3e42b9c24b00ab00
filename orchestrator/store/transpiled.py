"""JavaScript kept for TypeScript code: the first transpiled for a code is the one every
later run executes (``executors/typescript.py`` makes it, when the code is saved)."""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from sqlalchemy import Engine, select

from orchestrator.executors.typescript import Transpiled
from orchestrator.store import sql
from orchestrator.store.tables import transpiled_code


def code_key(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def kept_javascript(engine: Engine, code: str, transpile_now: Callable[[], Transpiled]) -> str:
    """The JavaScript kept for TypeScript ``code``, or ``transpile_now()``'s, kept (the first writer wins)."""
    def transpiled() -> dict[str, str]:
        made = transpile_now()
        return {"javascript": made.javascript, "transpiler": made.transpiler}
    return sql.kept_value(engine, transpiled_code.c.javascript, code_key(code), transpiled)


def javascript_of(engine: Engine, code: str) -> str | None:
    """The JavaScript kept for TypeScript ``code``, if any."""
    with engine.connect() as conn:
        return conn.execute(select(transpiled_code.c.javascript).where(
            transpiled_code.c.key == code_key(code))).scalar()
