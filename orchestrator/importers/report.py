"""What an import produced and what it says about it: the values every translator returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    TRANSLATED = "translated"  # an exact counterpart
    APPROXIMATED = "approximated"  # the nearest counterpart; the finding says what differs
    UNTRANSLATABLE = "untranslatable"  # became a step that fails naming the original and why


@dataclass(frozen=True)
class Finding:
    """One construct of the source: where it is (``tasks[2].then[0]``), what became of it, why."""

    verdict: Verdict
    source_path: str
    message: str


@dataclass(frozen=True)
class ImportedScript:
    """A saved script the imported flows call with ``script:``."""

    path: str
    language: str
    code: str
    summary: str | None = None


@dataclass(frozen=True)
class ImportedFlow:
    """One Millrace flow document (what ``millrace flows save`` takes) and the id it got."""

    flow_id: str
    original: str  # the source system's name for it (``namespace.id``, ``f/folder/flow``)
    document: dict[str, Any]


@dataclass
class FileReport:
    """Everything one source file became; a file is saved whole or not at all."""

    source: str
    flows: list[ImportedFlow] = field(default_factory=list)
    scripts: list[ImportedScript] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    renames: dict[str, str] = field(default_factory=dict)  # original name -> Millrace id
    problems: list[str] = field(default_factory=list)  # Millrace's own validation, or unreadable input

    def note(self, verdict: Verdict, source_path: str, message: str) -> None:
        self.findings.append(Finding(verdict, source_path, message))

    @property
    def untranslatable(self) -> bool:
        return bool(self.problems) or any(f.verdict is Verdict.UNTRANSLATABLE for f in self.findings)
