"""/api/v1/scripts: saved, versioned code at a path; its input schema read from the code."""
from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, url_for

from api import context, versioned
from api.auth import principal, requires
from api.responses import Links, SavedScript, Script, ScriptPage, VersionPage
from api.schemas import Paged, Prefixed, SaveScript, VersionChoice, accepts, answer, fails, query, returns
from orchestrator.definitions.steps import SCRIPT_PATH
from orchestrator.errors import Problem, ValidationError
from orchestrator.services.dependencies import dependencies_of, index_of
from orchestrator.services.scripts import save_script
from orchestrator.store import versions
from orchestrator.store.access import Permission

blueprint = Blueprint("scripts", __name__, url_prefix="/scripts")
_PATH = re.compile(SCRIPT_PATH)
MAX_PATH = 200


def _checked(path: str) -> str:
    if len(path) > MAX_PATH or not _PATH.fullmatch(path):
        raise ValidationError([Problem("path", f"'{path[:MAX_PATH]}' is not a script path: lowercase letters, "
                                               "digits, '_' and '-' in '/'-separated parts, at most 200 "
                                               "characters, e.g. etl/clean_rows")])
    return path


def _script_answer(row: dict[str, Any]) -> Script:
    return Script(
        path=row["path"], version=row["version"], language=row["language"], summary=row["summary"],
        code=row["code"], input_schema=row["input_schema"],
        dependencies=dependencies_of(context.engine(), row["code"]) if row["language"] == "python" else None,
        created_at=row["created_at"], created_by=row["created_by"],
        links=Links(self=url_for("v1.scripts.get_script", path=row["path"], version=row["version"])))


@blueprint.put("/<path:path>")
@requires(Permission.DEFINE)
@returns(201, Script)
@returns(200, Script)
@fails(400, 409)
@accepts(SaveScript)
def put_script(path: str, body: SaveScript) -> Response:
    """Save code as the script's next version (201), or find it unchanged (200); the answer
    holds the input schema read from the code."""
    engine = context.engine()
    previous = versions.newest_version(engine, versions.SCRIPTS, _checked(path))
    version = save_script(engine, path, body.language, body.code, body.summary, principal().actor,
                          index_of(context.settings()), context.settings().home)
    return answer(_script_answer(versions.get_version(engine, versions.SCRIPTS, path, version)),
                  201 if version > previous else 200)


@blueprint.get("/<path:path>")
@requires(Permission.READ)
@returns(200, Script)
@query(VersionChoice)
def get_script(path: str, query: VersionChoice) -> Response:
    """A script version with its code and input schema: the latest, or `?version=N`."""
    return answer(_script_answer(versions.get_version(context.engine(), versions.SCRIPTS, path, query.version)))


@blueprint.delete("/<path:path>")
@requires(Permission.DEFINE)
@returns(204)
def delete_script(path: str) -> Response:
    """Delete a script: it leaves listings and new runs; its versions stay for runs that pinned them."""
    versions.delete_versioned(context.engine(), versions.SCRIPTS, path, principal().actor)
    return Response(status=204)


@blueprint.get("/<path:path>/versions")
@requires(Permission.READ)
@returns(200, VersionPage)
@query(Paged)
def script_versions(path: str, query: Paged) -> Response:
    """Its versions, oldest first, each with a unified diff of its code against the one before."""
    return versioned.history(versions.SCRIPTS, path, "code", query)


@blueprint.get("")
@requires(Permission.READ)
@returns(200, ScriptPage)
@query(Prefixed)
def list_scripts(query: Prefixed) -> Response:
    """Saved scripts by path, filtered by `prefix`."""
    return versioned.listing(versions.SCRIPTS, query, ScriptPage, lambda row: SavedScript(
        path=row["path"], latest_version=row["latest_version"], updated_at=row["updated_at"]))
