"""Millrace ids for another system's names: one allocator per import, so every rename is
listed and two names that fold to the same id get numbered suffixes."""
from __future__ import annotations

import re

from orchestrator.definitions.steps import FLOW_ID

_REFUSED = re.compile(r"[^a-z0-9_/-]")
_SEGMENT_START = re.compile(r"(^|/)(?=-)")
_ID = re.compile(FLOW_ID)
MAX_ID = 200


def fold(name: str) -> str:
    """``Company.Team`` + ``/`` rules: lower-cased, ``.`` -> ``/``, what ids refuse -> ``_``."""
    folded = _REFUSED.sub("_", name.strip().lower().replace(".", "/"))
    segments = [s or "_" for s in folded.split("/")]
    folded = _SEGMENT_START.sub(r"\1_", "/".join(segments))
    return folded[:MAX_ID].rstrip("/") or "_"


class IdAllocator:
    """Hands out distinct Millrace ids for original names, remembering each one's."""

    def __init__(self) -> None:
        self._given: dict[str, str] = {}
        self._taken: set[str] = set()

    def id_for(self, original: str) -> str:
        """The id ``original`` gets: the same one each time it is asked for."""
        if original in self._given:
            return self._given[original]
        base = fold(original)
        candidate, n = base, 2
        while candidate in self._taken:
            suffix = f"_{n}"
            candidate, n = base[:MAX_ID - len(suffix)] + suffix, n + 1
        assert _ID.match(candidate), candidate
        self._given[original] = candidate
        self._taken.add(candidate)
        return candidate

    def renames(self) -> dict[str, str]:
        """Every original name whose id differs from it."""
        return {o: i for o, i in self._given.items() if o != i}
