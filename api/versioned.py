"""What flows and scripts share over HTTP: version histories with diffs, paged listings."""
from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from flask import Response

from api import context
from api.responses import Page, VersionDiff, VersionPage
from api.schemas import MAX_VERSION, Paged, answer, number_cursor
from orchestrator.store import versions


def history(kind: versions.Versioned, key: str, text_column: str, query: Paged) -> Response:
    """A page of ``key``'s versions, oldest first, each with a unified diff of its text
    against the one before; the cursor is the last version shown."""
    after = number_cursor(query.cursor, MAX_VERSION)
    rows = versions.versions_of(context.engine(), kind, key, text_column, after=after, limit=query.limit)
    previous = rows.pop(0)[text_column] if rows and rows[0]["version"] == after else ""
    rows = rows[:query.limit]
    items = []
    for row in rows:
        text = row[text_column]
        diff = "".join(difflib.unified_diff(previous.splitlines(True), text.splitlines(True),
                                            f"version {row['version'] - 1}", f"version {row['version']}"))
        items.append(VersionDiff(version=row["version"], created_at=row["created_at"], diff=diff))
        previous = text
    next_cursor = str(rows[-1]["version"]) if len(rows) == query.limit else None
    return answer(VersionPage(items=items, next_cursor=next_cursor))


def listing(kind: versions.Versioned, query: Any, page: type[Page[Any]],
            item: Callable[[dict[str, Any]], Any]) -> Response:
    """Live definitions by key, after ``cursor`` (the last key seen), filtered by ``prefix``."""
    rows = versions.list_heads(context.engine(), kind, prefix=query.prefix, after=query.cursor or "",
                               limit=query.limit)
    next_cursor = rows[-1][kind.key] if len(rows) == query.limit else None
    return answer(page(items=[item(row) for row in rows], next_cursor=next_cursor))
