"""The bodies the API accepts, as pydantic models: they validate requests and describe them
in the OpenAPI document, so the two cannot drift."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from flask import Response, current_app, request
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool
from werkzeug.exceptions import UnsupportedMediaType

from orchestrator.definitions.labels import Labels
from orchestrator.definitions.parser import MAX_DOCUMENT_BYTES, check_storable, problems_from
from orchestrator.errors import Problem, ValidationError
from orchestrator.store.access import Role

View = TypeVar("View", bound=Callable[..., Any])
MAX_VERSION = 2**31 - 1  # versions and attempts are 32-bit integers in the database
MAX_ID = 2**63 - 1  # ids are 64-bit
MAX_PAGE = 200  # items in one page of a list


def _iso_time(value: Any) -> Any:
    """An ISO 8601 time from a query string; without an offset it is UTC."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value[:50]}' is not an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") from None
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def _in_utc_range(value: dt.datetime) -> dt.datetime:
    """The time in UTC, which every store keeps; one that UTC cannot hold (year 1 at +14:00) is refused."""
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("is outside the times UTC can hold (years 1 to 9999)") from None


Time = Annotated[dt.datetime, BeforeValidator(_iso_time), AfterValidator(_in_utc_range)]
UtcTime = Annotated[AwareDatetime, AfterValidator(_in_utc_range)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StartRun(Body):
    """Start a run of a saved flow."""

    inputs: dict[str, Any] = Field(default_factory=dict, description="values for the flow's inputs")
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION,
                                description="the flow version; the latest when omitted")
    labels: Labels = Field(default_factory=dict, description="over the flow's labels, on this run")
    priority: int | None = Field(default=None, ge=0, le=9, description="0-9, over the flow's `priority`")


class Decision(Body):
    """Approve or reject a waiting approval step."""

    reason: str | None = Field(default=None, max_length=2000)
    values: dict[str, Any] | None = Field(default=None, description=(
        "approving a step with a form: its fields' values (checked against their types), the step's result"))


class RestartRun(Body):
    """Restart a failed or cancelled run: from a step (`from`) or from its failed steps
    (`from_failed`), one of the two. The restarted steps and what comes after them run again;
    the steps before them, the other items of a for_each and the other branches of a parallel
    are reused (marked `reused_from` in the new run)."""

    from_: str | None = Field(default=None, alias="from", min_length=1, max_length=1000, description=(
        "the path of the step to restart at, as the run's steps write it: a top-level step (`build`), a step "
        "of a for_each item (`each[3].work`), of a parallel branch (`both.total.add`), of a switch case "
        "(`pick.big`) or of a loop iteration (`count[2].inc`)"), examples=["each[3].work"])
    from_failed: StrictBool = Field(default=False, description=(
        "true: re-run only the steps that failed and what comes after them (succeeded items of a for_each "
        "are reused)"))
    version: Literal["same", "latest"] = Field(default="same", description=(
        "run on the run's own flow version (`same`, the default) or on the latest saved one (`latest`)"))


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

    language: Literal["python", "bash", "javascript", "typescript", "sql"]
    code: str = Field(min_length=1, max_length=MAX_DOCUMENT_BYTES,
                      description="Python/JavaScript/TypeScript: defines `main`; Bash/SQL: the script itself")
    summary: str | None = Field(default=None, max_length=500)


class NewSchedule(Body):
    """A cron schedule of a saved flow."""

    flow: str = Field(min_length=1, max_length=200)
    cron: str = Field(min_length=1, max_length=200, description="5 fields, 6 with seconds first, or @hourly...")
    timezone: str = Field(default="UTC", max_length=64)
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: Labels = Field(default_factory=dict, description="over the flow's labels, on every run it starts")
    catchup: Literal["none", "last", "all"] = "last"
    max_catchup: int = Field(default=100, ge=1, le=10_000)
    overlap: Literal["allow", "skip", "queue"] = "allow"
    enabled: StrictBool = True
    paused_until: UtcTime | None = None


class ScheduleChanges(Body):
    """The fields to change; a schedule declared in a flow changes only enabled and paused_until."""

    cron: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    inputs: dict[str, Any] | None = None
    labels: Labels | None = None
    catchup: Literal["none", "last", "all"] | None = None
    max_catchup: int | None = Field(default=None, ge=1, le=10_000)
    overlap: Literal["allow", "skip", "queue"] | None = None
    enabled: StrictBool | None = None
    paused_until: UtcTime | None = None


class Backfill(Body):
    """Run every slot of a time range that has not run."""

    start: UtcTime
    end: UtcTime


class Empty(Body):
    """No body, or an empty JSON object."""




class Query(BaseModel):
    """A view's query parameters: parsed from the URL, described in the OpenAPI document; an
    unknown parameter is refused (a typo would otherwise be ignored silently)."""

    model_config = ConfigDict(extra="forbid")


class Headers(BaseModel):
    """A view's request headers (by their HTTP names, the aliases); others are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Paged(Query):
    """Every list pages the same way: ``limit`` in, ``cursor`` = the ``next_cursor`` of the page before."""

    limit: int = Field(default=50, ge=1, le=MAX_PAGE, description="how many items, at most")
    cursor: str | None = Field(default=None, max_length=200,
                               description="the `next_cursor` of the page before; absent for the first page")


class Prefixed(Paged):
    prefix: str = Field(default="", max_length=200, description="only keys that start with this")


class VersionChoice(Query):
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION, description="this version; the latest if absent")


def _parsing(model: type[BaseModel], kwarg: str, read: Callable[[], Any],
             problems: Callable[[pydantic.ValidationError], list[Problem]] = problems_from) -> Callable[[View], View]:
    """A decorator passing ``model`` parsed from ``read()`` to the view as ``kwarg``, and
    marking the view with it (``millrace_<kwarg>``) for the OpenAPI document."""

    def wrap(view: View) -> View:
        @wraps(view)
        def parsed(*args: Any, **kwargs: Any) -> Any:
            try:
                found = model.model_validate(read())
            except pydantic.ValidationError as exc:
                raise ValidationError(problems(exc)) from None
            return view(*args, **{kwarg: found}, **kwargs)

        setattr(parsed, f"millrace_{kwarg}", model)
        return parsed  # type: ignore[return-value]

    return wrap


def query(model: type[Query]) -> Callable[[View], View]:
    """Parse the query string with ``model`` and pass it to the view as ``query``."""

    lists = getattr(model, "repeatable", ())
    prefixed = getattr(model, "prefixed", {})

    def read() -> dict[str, Any]:
        given = request.args
        repeated = sorted(name for name in given if len(given.getlist(name)) > 1 and name not in lists)
        if repeated:
            raise ValidationError([Problem(name, "give this query parameter once") for name in repeated])
        found: dict[str, Any] = {}
        for name in given:
            prefix = next((p for p in prefixed if name.startswith(p)), None)
            if prefix is not None:  # `inputs.customer=42` -> inputs: {customer: "42"}
                found.setdefault(prefixed[prefix], {})[name[len(prefix):]] = given[name]
            else:
                found[name] = given.getlist(name) if name in lists else given[name]
        return found

    def problems(exc: pydantic.ValidationError) -> list[Problem]:
        unknown = f"unknown query parameter; this route reads {', '.join(model.model_fields)}"
        return [Problem(p.path, unknown) if p.message == "unknown field" else p for p in problems_from(exc)]

    return _parsing(model, "query", read, problems)


def headers(model: type[Headers]) -> Callable[[View], View]:
    """Parse the request headers ``model`` names and pass them to the view as ``headers``."""
    names = [field.alias or name for name, field in model.model_fields.items()]
    return _parsing(model, "headers", lambda: {name: request.headers[name] for name in names
                                               if name in request.headers})


def accepts(model: type[Body]) -> Callable[[View], View]:
    """Validate the JSON body with ``model`` and pass it to the view as ``body``."""

    def read() -> Any:
        if not (request.content_length or request.data):
            return {}
        if request.mimetype != "application/json":
            raise UnsupportedMediaType(f"send the body as JSON (Content-Type: application/json), "
                                       f"not '{request.mimetype or 'none'}'")
        try:
            data = request.get_json(silent=True)
            if data is None:
                raise ValidationError([Problem("", "the body must be JSON and is not valid JSON")])
            check_storable(data)
        except RecursionError:
            raise ValidationError([Problem("", "the body nests too deeply")]) from None
        return data

    return _parsing(model, "body", read, lambda exc: problems_from(exc, model))


def number_cursor(raw: str | None, high: int = MAX_ID) -> int:
    """A cursor that is a number this API returned (an id, a version): 0 for the first page."""
    if not raw:
        return 0
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > high:
        raise ValidationError([Problem("cursor", "not a cursor this API returned")])
    return int(raw)


def returns(status: int, model: type[BaseModel] | None = None, *, media: str = "application/json",
            headers: dict[str, str] | None = None) -> Callable[[View], View]:
    """A success answer of the view, for the OpenAPI document: its status, its body's model
    (none for 204) and the headers it sets. Stack one per status."""

    def mark(view: View) -> View:
        answers = dict(getattr(view, "millrace_returns", {}))
        answers[status] = (model, media, headers or {})
        view.millrace_returns = answers  # type: ignore[attr-defined]
        return view

    return mark


def fails(*statuses: int) -> Callable[[View], View]:
    """Error statuses a view answers besides those every route of its kind can (see api.openapi)."""

    def mark(view: View) -> View:
        view.millrace_fails = statuses  # type: ignore[attr-defined]
        return view

    return mark


def answer(body: BaseModel, status: int = 200, **headers: str) -> Response:
    """``body`` as JSON, as its model serializes it (the model the document shows), keys
    sorted as in every other answer (jsonify's); a field with a default that was not set is
    left out (a secret's ``value``)."""
    data = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    response = current_app.json.response(data)
    response.status_code = status
    response.headers.update(headers)
    return response
