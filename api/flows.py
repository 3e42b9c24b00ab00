"""/api/v1/flows: save flow documents as versions, read them back, validate without saving."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request, url_for
from werkzeug.exceptions import UnsupportedMediaType

from api import context, versioned
from api.auth import principal, requires
from api.errors import Forbidden
from api.responses import FlowPage, FlowVersion, Links, SavedFlow, Validated, VersionPage
from api.schemas import Paged, Prefixed, VersionChoice, answer, fails, query, returns
from orchestrator.definitions.flow import Flow
from orchestrator.definitions.parser import parse_flow
from orchestrator.errors import Problem, ValidationError
from orchestrator.execution.plan import build_plan
from orchestrator.services.dependencies import index_of
from orchestrator.services.limits import check_limits, check_loop_iterations, check_sql_databases, maxima
from orchestrator.services.saving import check_event_triggers, own_names, save_flow
from orchestrator.services.scripts import check_script_steps
from orchestrator.store import versions
from orchestrator.store.access import Permission

blueprint = Blueprint("flows", __name__, url_prefix="/flows")


def _parse_body() -> tuple[Flow, str]:
    body = request.get_data(cache=False)
    content_type = request.mimetype or ""
    if content_type not in FLOW_MEDIA:
        raise UnsupportedMediaType(f"send the flow as application/yaml or application/json, not "
                                   f"'{content_type or 'none'}'")
    flow = parse_flow(body, content_type)
    return flow, body.decode("utf-8")


FLOW_MEDIA = ("application/yaml", "application/json", "application/x-yaml", "text/yaml")


def _flow_answer(row: dict[str, Any]) -> FlowVersion:
    return FlowVersion(id=row["flow_id"], version=row["version"], created_at=row["created_at"],
                       document=row["document"], source=row["source"],
                       links=Links(self=url_for("v1.flows.get_flow", flow_id=row["flow_id"], version=row["version"])))


def _takes_document(view):  # type: ignore[no-untyped-def]
    view.millrace_document = True  # its body is a flow document (OpenAPI shows the flow schema)
    return view


@blueprint.post("/validate")
@requires(Permission.READ)
@returns(200, Validated)
@fails(400)
@_takes_document
def validate_flow() -> Response:
    """Check a flow document; nothing is stored."""
    flow, _ = _parse_body()
    check_limits(flow, maxima(context.settings()))
    check_sql_databases(flow, context.settings().sql_own_database)
    check_loop_iterations(flow, context.settings().max_loop_iterations)
    check_event_triggers(flow, own_names(context.settings()))
    check_script_steps(context.engine(), flow)
    return answer(Validated(valid=True, id=flow.id, steps=len(flow.steps)))


@blueprint.put("/<path:flow_id>")
@requires(Permission.DEFINE)
@returns(201, FlowVersion)
@returns(200, FlowVersion)
@fails(400, 409)
@_takes_document
def put_flow(flow_id: str) -> Response:
    """Save a flow document as a new version (201), or find it unchanged (200)."""
    flow, source = _parse_body()
    if flow.id != flow_id:
        raise ValidationError([Problem("id", f"the document's id '{flow.id}' differs from the URL's '{flow_id}'")])
    _check_secret_scope(flow)
    engine = context.engine()
    previous = versions.newest_version(engine, versions.FLOWS, flow_id)
    version = save_flow(engine, flow, source, actor=principal().actor, index=index_of(context.settings()),
                        ceiling=maxima(context.settings()), sql_own_database=context.settings().sql_own_database,
                        max_loop_iterations=context.settings().max_loop_iterations,
                        own=own_names(context.settings()), home=context.settings().home)
    return answer(_flow_answer(versions.get_flow_version(engine, flow_id, version)), 201 if version > previous else 200)


@blueprint.get("/<path:flow_id>")
@requires(Permission.READ)
@returns(200, FlowVersion)
@query(VersionChoice)
def get_flow(flow_id: str, query: VersionChoice) -> Response:
    """A flow version with its document and source: the latest, or `?version=N`."""
    return answer(_flow_answer(versions.get_flow_version(context.engine(), flow_id, query.version)))


@blueprint.delete("/<path:flow_id>")
@requires(Permission.DEFINE)
@returns(204)
def delete_flow(flow_id: str) -> Response:
    """Delete a flow: it leaves listings and cannot start; its versions stay for its runs."""
    versions.delete_versioned(context.engine(), versions.FLOWS, flow_id, principal().actor)
    return Response(status=204)


@blueprint.get("/<path:flow_id>/versions")
@requires(Permission.READ)
@returns(200, VersionPage)
@query(Paged)
def flow_versions(flow_id: str, query: Paged) -> Response:
    """Its versions, oldest first, each with a unified diff of its source against the one before."""
    return versioned.history(versions.FLOWS, flow_id, "source", query)


@blueprint.get("")
@requires(Permission.READ)
@returns(200, FlowPage)
@query(Prefixed)
def list_flows(query: Prefixed) -> Response:
    """Saved flows by id, filtered by `prefix`."""
    return versioned.listing(versions.FLOWS, query, FlowPage, lambda row: SavedFlow(
        id=row["flow_id"], latest_version=row["latest_version"], updated_at=row["updated_at"]))


def _check_secret_scope(flow: Flow) -> None:
    """A token saves only flows whose steps read secrets its scope allows: every run of the
    version it saves, by whatever trigger, reads those and no other (a step reads only the
    secrets its expressions name)."""
    me = principal()
    read = {name: node.path for node in build_plan(flow, 0).nodes.values() for name in sorted(node.secrets)}
    refused = {name: path for name, path in read.items() if not me.may_read_secret(name)}
    if refused:
        listed = ", ".join(f"'{name}' (step {path})" for name, path in sorted(refused.items()))
        raise Forbidden(f"this token may not save flows that read secret {listed}; its secrets are "
                        f"{', '.join(me.secrets) or 'none'}: ask an admin for a token whose secrets include them")
