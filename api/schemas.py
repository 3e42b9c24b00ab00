"""The bodies the API accepts, as pydantic models: they validate requests and describe them
in the OpenAPI document, so the two cannot drift."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from flask import request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from orchestrator.definitions.parser import MAX_DOCUMENT_BYTES, check_storable, problems_from
from orchestrator.errors import Problem, ValidationError
from orchestrator.store.access import Role

View = TypeVar("View", bound=Callable[..., Any])
MAX_VERSION = 2**31 - 1  # versions and attempts are 32-bit integers in the database
MAX_ID = 2**63 - 1  # ids are 64-bit


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StartRun(Body):
    """Start a run of a saved flow."""

    inputs: dict[str, Any] = Field(default_factory=dict, description="values for the flow's inputs")
    version: int | None = Field(default=None, ge=1, description="the flow version; the latest when omitted")


class Decision(Body):
    """Approve or reject a waiting approval step."""

    reason: str | None = Field(default=None, max_length=2000)


class RestartRun(Body):
    """Restart a failed run from a top-level step."""

    from_: str = Field(alias="from", description="the id of the top-level step to start at")


class SetVariable(Body):
    """Set a variable, or a secret (encrypted at rest, never returned)."""

    value: Any
    secret: StrictBool = False


class NewToken(Body):
    """Create an API token; it is returned once."""

    name: str = Field(min_length=1, max_length=200)
    role: Role
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_*?\[\]-]{1,100}$")]] = Field(
        default=["*"], max_length=100,
        description="fnmatch patterns of the secrets the flows this token saves may read (default: any)")


class SaveScript(Body):
    """Save code as a script's next version."""

    language: Literal["python", "bash", "javascript", "sql"]
    code: str = Field(min_length=1, max_length=MAX_DOCUMENT_BYTES,
                      description="Python/JavaScript: defines `main`; Bash/SQL: the script itself")
    summary: str | None = Field(default=None, max_length=500)


class NewSchedule(Body):
    """A cron schedule of a saved flow."""

    flow: str = Field(min_length=1, max_length=200)
    cron: str = Field(min_length=1, max_length=200, description="5 fields, 6 with seconds first, or @hourly...")
    timezone: str = Field(default="UTC", max_length=64)
    inputs: dict[str, Any] = Field(default_factory=dict)
    catchup: Literal["none", "last", "all"] = "last"
    max_catchup: int = Field(default=100, ge=1, le=10_000)
    overlap: Literal["allow", "skip", "queue"] = "allow"
    enabled: StrictBool = True
    paused_until: AwareDatetime | None = None


class ScheduleChanges(Body):
    """The fields to change; a schedule declared in a flow changes only enabled and paused_until."""

    cron: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    inputs: dict[str, Any] | None = None
    catchup: Literal["none", "last", "all"] | None = None
    max_catchup: int | None = Field(default=None, ge=1, le=10_000)
    overlap: Literal["allow", "skip", "queue"] | None = None
    enabled: StrictBool | None = None
    paused_until: AwareDatetime | None = None


class Backfill(Body):
    """Run every slot of a time range that has not run."""

    start: AwareDatetime
    end: AwareDatetime


class Empty(Body):
    """No body, or an empty JSON object."""


def query_number(name: str, kind: type[int] | type[float], default: float | None = None, *,
                 low: float | None = None, high: float | None = None) -> Any:
    """The query parameter ``name`` as ``kind``, kept within [low, high]; a 422 naming it if it
    is not a number."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ValidationError([Problem(name, f"'{raw[:50]}' is not {noun}")]) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValidationError([Problem(name, f"'{raw[:50]}' is not a finite number")])
    if low is not None:
        value = max(value, kind(low))
    if high is not None:
        value = min(value, kind(high))
    return value


def responds(*statuses: int) -> Callable[[View], View]:
    """The success statuses a view answers with, for the OpenAPI document (when not the
    method's usual one: 200, or 204 for DELETE)."""

    def mark(view: View) -> View:
        view.millrace_statuses = statuses  # type: ignore[attr-defined]
        return view

    return mark


def accepts(model: type[Body]) -> Callable[[View], View]:
    """Validate the JSON body with ``model`` and pass it to the view as ``body``."""

    def wrap(view: View) -> View:
        @wraps(view)
        def validated(*args: Any, **kwargs: Any) -> Any:
            try:
                data = request.get_json(silent=True) if request.content_length or request.data else {}
                if data is None:
                    raise ValidationError([Problem("", "the body must be JSON (Content-Type: application/json)")])
                check_storable(data)
            except RecursionError:
                raise ValidationError([Problem("", "the body nests too deeply")]) from None
            try:
                body = model.model_validate(data)
            except pydantic.ValidationError as exc:
                raise ValidationError(problems_from(exc)) from None
            return view(*args, body=body, **kwargs)

        validated.millrace_body = model  # type: ignore[attr-defined]
        return validated  # type: ignore[return-value]

    return wrap
