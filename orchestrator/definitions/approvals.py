"""An approval step as the document declares it: the form a person fills, who may decide, and
what its timeout does; and the checks a decision's values pass against that form."""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.definitions.durations import Duration
from orchestrator.errors import Problem, ValidationError, join_path

FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
FieldType = Literal["string", "integer", "number", "boolean", "enum"]
# The API's roles (orchestrator/store/access.py's Role; a unit test holds the two together).
RoleName = Literal["admin", "developer", "operator", "viewer"]
MAX_TEXT = 10_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class FormField(_Model):
    """One value the person deciding gives; the decision's values are the step's result."""

    type: FieldType = Field(description="string, integer, number, boolean, or enum (one of `enum`)")
    required: bool = Field(default=False, description="a decision without it is refused (unless it has a default)")
    default: Any = Field(default=None, description="the value when the decision leaves it out, and on_timeout: "
                                                   "approve's result")
    description: str | None = Field(default=None, max_length=2000, description="shown beside the field")
    enum: Annotated[list[str | int | float], Field(min_length=1, max_length=1000)] | None = Field(
        default=None, description="for type enum: the values allowed")

    @model_validator(mode="after")
    def _consistent(self) -> FormField:
        if (self.type == "enum") != (self.enum is not None):
            raise ValueError("`enum:` lists the values of a field of type enum, and only of one")
        if self.default is not None:
            problem = value_problem(self, self.default)
            if problem:
                raise ValueError(f"default {self.default!r}: {problem}")
        return self


class Approvers(_Model):
    """Who may decide: a token named here (by name or id) or a token of a role named here."""

    roles: list[RoleName] = Field(default_factory=list, description="e.g. [operator, admin]")
    tokens: list[str | int] = Field(default_factory=list,
                                    description="API tokens by name or id, e.g. [release-manager, 12]")

    @model_validator(mode="after")
    def _someone(self) -> Approvers:
        if not self.roles and not self.tokens:
            raise ValueError("approvers names nobody: give `roles:` or `tokens:` (or leave approvers out: "
                             "any token that may operate runs decides)")
        return self

    def allow(self, *, token_id: int | None, token_name: str | None, role: str | None) -> bool:
        """Whether a token (its id and name) or a role is one this rule names."""
        if role is not None and role in self.roles:
            return True
        names = {str(t) for t in self.tokens}
        return token_id is not None and (str(token_id) in names or token_name in names)


class Approval(_Model):
    """Wait for a person (``approval: {}``, ``approval: true`` and an empty ``approval:`` are the same)."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: _or_shorthand(schema))

    timeout: Duration | None = None
    description: str | None = None
    form: dict[Annotated[str, Field(pattern=FIELD_NAME)], FormField] = Field(
        default_factory=dict, description="the values a person gives to approve; they become the step's result "
                                          "(typed), e.g. {amount: {type: integer, required: true}}",
        json_schema_extra={"propertyNames": {"pattern": FIELD_NAME}})
    approvers: Approvers | None = Field(default=None, description=(
        "who may decide (default: any token that may operate runs)"))
    self_approval: bool = Field(default=True, description="false: whoever started the run may not approve it")
    on_timeout: Literal["reject", "approve"] = Field(default="reject", description=(
        "when `timeout` passes: reject (the step fails saying it timed out) or approve (the form's defaults "
        "become the result)"))

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {} if data is True or data is None else data

    @model_validator(mode="after")
    def _timeout_decides(self) -> Approval:
        if self.on_timeout == "approve":
            if self.timeout is None:
                raise ValueError("on_timeout: approve needs a `timeout:` (after which the defaults are approved)")
            lacking = [name for name, f in self.form.items() if f.required and f.default is None]
            if lacking:
                raise ValueError(f"on_timeout: approve needs a default for required field '{lacking[0]}'")
        return self

    def defaults(self) -> dict[str, Any]:
        """The result when the timeout approves: each field's default (null without one)."""
        return {name: f.default for name, f in self.form.items()}


def _or_shorthand(schema: dict[str, Any]) -> None:
    whole = dict(schema)
    schema.clear()
    schema["anyOf"] = [whole, {"type": "boolean", "const": True}, {"type": "null"}]


def value_problem(field: FormField, value: Any) -> str | None:
    """What is wrong with ``value`` for ``field``, or None when it fits (no coercion: JSON's types)."""
    if field.type == "string":
        ok = isinstance(value, str) and len(value) <= MAX_TEXT
        return None if ok else f"expected a string (at most {MAX_TEXT} characters)"
    if field.type == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "expected an integer"
    if field.type == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "expected a number"
    if field.type == "boolean":
        return None if isinstance(value, bool) else "expected true or false"
    allowed = field.enum or []
    fits = any(value == a and type(value) is type(a) for a in allowed)
    return None if fits else "expected one of " + ", ".join(repr(a) for a in allowed)


def form_result(approval: Approval, values: dict[str, Any], where: str = "values") -> dict[str, Any]:
    """The step's result for a decision's ``values``: each field's value, or its default; raises
    ValidationError naming every field that is missing, unknown or of the wrong type."""
    problems = [Problem(join_path(where, name), f"'{name}' is not a field of this form; it has "
                        f"{', '.join(approval.form) or 'none'}") for name in values if name not in approval.form]
    result: dict[str, Any] = {}
    for name, field in approval.form.items():
        value = values.get(name, field.default)
        if value is None:
            if field.required:
                problems.append(Problem(join_path(where, name), f"'{name}' is required"))
            result[name] = None
            continue
        problem = value_problem(field, value)
        if problem:
            problems.append(Problem(join_path(where, name), problem))
        result[name] = value
    if problems:
        raise ValidationError(problems)
    return result


def values_from_text(approval: Approval, fields: dict[str, str], where: str = "values") -> dict[str, Any]:
    """A web form's text fields read as the form's types (an empty field is left out; a boolean
    is a checkbox, present or not); raises ValidationError naming a field that does not read."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, field in approval.form.items():
        raw = fields.get(name, "")
        if field.type == "boolean":
            values[name] = raw in ("on", "true", "1")
            continue
        if raw == "":
            continue
        try:
            values[name] = _read(field, raw)
        except ValueError as exc:
            problems.append(Problem(join_path(where, name), str(exc)))
    if problems:
        raise ValidationError(problems)
    return values


def _read(field: FormField, raw: str) -> Any:
    if field.type == "integer":
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError(f"'{raw}' is not an integer") from None
    if field.type == "number":
        try:
            return float(raw.strip())
        except ValueError:
            raise ValueError(f"'{raw}' is not a number") from None
    if field.type == "enum":
        return next((a for a in field.enum or [] if str(a) == raw), raw)
    return raw
