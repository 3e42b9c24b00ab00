"""The errors Millrace reports to its users; each carries where it happened."""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document, at a JSON path like ``steps[2].with.x``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class FlowError(Exception):
    """Base of every error a user can cause with a flow, its inputs or a run."""


class ValidationError(FlowError):
    """A document or an input set is invalid; ``problems`` lists every place."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ExpressionError(FlowError):
    """An expression failed to evaluate at run time."""


class NotFound(FlowError):
    """A flow, run or step that does not exist."""


class Conflict(FlowError):
    """The request contradicts the current state (e.g. approving a finished step)."""


class NotAllowed(FlowError):
    """Whoever asks may not do this (an approval's approvers rule, self_approval, a link that
    is not valid)."""


class Gone(FlowError):
    """What was asked for worked once and no longer does (an approval link used or expired)."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'python'"`` when one of ``candidates`` is close to ``word``, else ``""``."""
    found = difflib.get_close_matches(word, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean '{found[0]}'" if found else ""


def join_path(*parts: str | int) -> str:
    """``join_path("steps", 2, "with", "x")`` -> ``steps[2].with.x``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out


class DependencyError(FlowError):
    """Requirements that cannot be resolved or installed; the message is uv's (or npm's) own."""
