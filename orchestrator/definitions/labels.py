"""Labels: short ``key: value`` strings on a run, to find it by (``team: billing``).

A run's labels are its flow's ``labels:``, then what its start gives (API, CLI, schedule,
webhook) over them; a subflow run takes its parent's over its own flow's; a step's
``labels:`` option, evaluated over its ``result`` after it ran, adds to its run's. Pure.
"""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field

from orchestrator.errors import Problem, ValidationError

LABEL_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_./-]{0,62}$"
MAX_VALUE = 200
MAX_LABELS = 50

LabelKey = Annotated[str, Field(pattern=LABEL_KEY, description="letters, digits, _ . / -; at most 63")]
LabelValue = Annotated[str, Field(max_length=MAX_VALUE)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(
    max_length=MAX_LABELS, description="key: value strings to find its runs by (`GET /api/v1/runs?label=team:billing`)",
    examples=[{"team": "billing", "env": "prod"}])]


def label_value(value: Any) -> str:
    """What a step's evaluated label is stored as: a string (JSON-like for numbers and booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)[:MAX_VALUE]


def merged(*layers: dict[str, str] | None) -> dict[str, str]:
    """Later layers' labels over earlier ones'."""
    out: dict[str, str] = {}
    for layer in layers:
        out.update(layer or {})
    return out


def check_labels(given: Any, path: str = "labels") -> dict[str, str]:
    """Labels given at a start (API body, CLI, schedule, webhook), checked; ValidationError naming each."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ValidationError([Problem(path, "expected an object of key: value strings")])
    problems = []
    if len(given) > MAX_LABELS:
        problems.append(Problem(path, f"at most {MAX_LABELS} labels"))
    for key, value in given.items():
        if not isinstance(key, str) or not re.match(LABEL_KEY, key):
            problems.append(Problem(f"{path}.{key}", "a label key is letters, digits, _ . / - (at most 63)"))
        elif not isinstance(value, str) or len(value) > MAX_VALUE:
            problems.append(Problem(f"{path}.{key}", f"a label value is a string of at most {MAX_VALUE} characters"))
    if problems:
        raise ValidationError(problems)
    return dict(given)


def parse_label_filter(text: str, path: str = "label") -> tuple[str, str]:
    """``team:billing`` -> ("team", "billing"): the key is before the first colon."""
    key, colon, value = text.partition(":")
    if not colon or not re.match(LABEL_KEY, key):
        raise ValidationError([Problem(path, f"'{text}' is not key:value (e.g. label=team:billing)")])
    return key, value


def parse_label_option(text: str) -> tuple[str, str]:
    """The CLI's ``--label team=billing``."""
    key, eq, value = text.partition("=")
    if not eq or not re.match(LABEL_KEY, key):
        raise ValidationError([Problem("--label", f"'{text}' is not key=value (e.g. --label team=billing)")])
    return key, value
