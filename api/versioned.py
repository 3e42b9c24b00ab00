"""What flows and scripts share over HTTP: version histories with diffs, paged listings."""
from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, request

from api import context
from api.schemas import query_number
from orchestrator.store import versions

MAX_PAGE = 200


def page_limit() -> int:
    """``?limit=``, kept between 1 and MAX_PAGE (50 when absent)."""
    return query_number("limit", int, 50, low=1, high=MAX_PAGE)


def history(kind: versions.Versioned, key: str, text_column: str) -> Response:
    """Every version of ``key``, each with a unified diff of its text against the one before."""
    items = []
    previous = ""
    for row in versions.versions_of(context.engine(), kind, key, text_column):
        text = row[text_column]
        diff = "".join(difflib.unified_diff(previous.splitlines(True), text.splitlines(True),
                                            f"version {row['version'] - 1}", f"version {row['version']}"))
        items.append({"version": row["version"], "created_at": row["created_at"].isoformat(), "diff": diff})
        previous = text
    return jsonify({"id": key, "versions": items})


def listing(kind: versions.Versioned, item: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
    """Live definitions by key, paged with ``cursor`` (the last key seen), filtered by ``prefix``."""
    limit = page_limit()
    rows = versions.list_heads(context.engine(), kind, prefix=request.args.get("prefix", ""),
                              after=request.args.get("cursor", ""), limit=limit)
    next_cursor = rows[-1][kind.key] if len(rows) == limit else None
    return jsonify({"items": [item(row) for row in rows], "next_cursor": next_cursor})
