"""What a Windmill module says besides its code (pure): retry, suspend, durations, and the
keys each module kind has, so that none is dropped without the report saying so."""
from __future__ import annotations

from typing import Any

from orchestrator.importers.report import FileReport, Verdict
from orchestrator.importers.windmill_expressions import Untranslatable

_APPROVAL_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}
# The keys of each module kind's `value` that the translation reads, or that mean nothing here
# (`lock`: Millrace locks a step's packages when it is saved; `is_trigger`: the editor's).
_VALUE_KEYS = {
    "rawscript": {"type", "content", "language", "input_transforms", "lock", "tag", "path", "is_trigger"},
    "script": {"type", "path", "input_transforms", "hash", "is_trigger"},
    "flow": {"type", "path", "input_transforms"},
    "forloopflow": {"type", "iterator", "modules", "parallel", "parallelism", "skip_failures"},
    "whileloopflow": {"type", "modules", "skip_failures"},
    "branchone": {"type", "branches", "default"},
    "branchall": {"type", "branches", "parallel"},
    "identity": {"type", "flow"},
}


def unknown_keys(value: dict[str, Any], where: str, report: FileReport) -> None:
    """Note every key of a module's ``value`` the translation does not carry over."""
    for key in sorted(set(value) - _VALUE_KEYS.get(str(value.get("type")), set(value))):
        report.note(Verdict.APPROXIMATED, f"{where}.{key}", f"`{key}` is not imported")


def seconds(value: Any, where: str) -> str:
    """Windmill's seconds as a Millrace duration."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return f"{value:g}s"
    raise Untranslatable(f"{where} is not a number of seconds")


def translate_retry(retry: dict[str, Any], where: str, report: FileReport) -> dict[str, Any] | None:
    """Windmill counts retries after the first run, Millrace attempts in all."""
    constant, exponential = retry.get("constant") or {}, retry.get("exponential") or {}
    if exponential.get("attempts"):
        multiplier, base = exponential.get("multiplier", 1), exponential.get("seconds", 1)
        report.note(Verdict.APPROXIMATED, where, f"exponential: Windmill waits {multiplier} * {base}^n s, Millrace "
                                                 f"{multiplier * base}s doubling each attempt")
        attempts = int(exponential["attempts"]) + int(constant.get("attempts") or 0)
        return {"attempts": min(attempts + 1, 100), "delay": f"{max(multiplier * base, 0):g}s",
                "backoff": "exponential"}
    if constant.get("attempts"):
        return {"attempts": min(int(constant["attempts"]) + 1, 100),
                "delay": f"{max(constant.get('seconds', 0), 0):g}s"}
    return None


def approval_step(suspend: dict[str, Any], where: str, report: FileReport) -> dict[str, Any]:
    """A module's ``suspend`` as an approval step (without its id): the resume form as its form."""
    approval: dict[str, Any] = {}
    if suspend.get("timeout"):
        approval["timeout"] = seconds(suspend["timeout"], f"{where}.timeout")
    if suspend.get("self_approval_disabled"):
        approval["self_approval"] = False
    if (suspend.get("required_events") or 1) > 1:
        report.note(Verdict.APPROXIMATED, f"{where}.required_events", "one decision resumes the run (Windmill "
                                                                      f"waited for {suspend['required_events']})")
    if suspend.get("user_groups_required") or suspend.get("user_auth_required"):
        report.note(Verdict.APPROXIMATED, f"{where}.user_groups_required", "who may approve: any token that may "
                                                                           "operate runs (set `approvers:`)")
    form = (suspend.get("resume_form") or {}).get("schema") or {}
    required = set(form.get("required") or [])
    fields = {}
    for name, spec in (form.get("properties") or {}).items():
        kind = "enum" if spec.get("enum") else _APPROVAL_TYPES.get(spec.get("type", "string"))
        if kind is None:
            report.note(Verdict.APPROXIMATED, f"{where}.resume_form.schema.properties.{name}",
                        f"a {spec.get('type')} field is asked as text")
            kind = "string"
        field: dict[str, Any] = {"type": kind, "required": name in required}
        for key in ("default", "description", "enum"):
            if spec.get(key) not in (None, ""):
                field[key] = spec[key]
        fields[name] = field
    if fields:
        approval["form"] = fields
    step: dict[str, Any] = {"approval": approval}
    if suspend.get("continue_on_disapprove_timeout") or suspend.get("continue_on_disapproved"):
        step["continue_on_error"] = True
    report.note(Verdict.TRANSLATED, where, "suspend -> an approval step; `resume` reads its values")
    return step
