"""The OpenAPI 3.1 document, built from the routes themselves and the models that validate them."""
from __future__ import annotations

import importlib.resources
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, url_for
from markupsafe import escape

from api.auth import requires
from api.schemas import returns
from orchestrator.definitions.examples import flow_schema
from orchestrator.definitions.flow import Flow
from orchestrator.errors import NotFound
from orchestrator.store.access import Permission

blueprint = Blueprint("openapi", __name__)
_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
_INT_PARAM = re.compile(r"<int:([a-z_]+)>")
_PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["path", "message"], "properties": {
            "path": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before trying again",
                                "schema": {"type": "integer"}}}
# What each error status means here (api.errors maps exceptions to them).
_ERRORS = {
    400: "the request is well-formed but cannot be done as asked (see detail)",
    401: "no token, or an unknown or revoked one",
    403: "the token's role may not do this",
    404: "what the URL names does not exist",
    409: "it conflicts with the current state (see detail)",
    410: "it existed and no longer does: a run that retention purged (see detail)",
    413: "the body is larger than the API accepts",
    415: "the body's Content-Type is not one this operation reads",
    422: "a parameter, header or the body is invalid: `errors` names each place and what to change",
    503: "the database (or, for /readyz, the broker) is unreachable: try again after Retry-After",
}
_ENDPOINTS_WITHOUT_DOCUMENT = ("static", "docs", "docs_assets")


def build(app: Flask) -> dict[str, Any]:
    """Every route of ``app`` with its permission, parameters, headers, body, answers and errors."""
    components: dict[str, Any] = {"Problem": _PROBLEM}
    paths: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in _ENDPOINTS_WITHOUT_DOCUMENT or rule.endpoint.startswith("console."):
            continue  # the docs page, its files and the console's pages are not API operations
        view = app.view_functions[rule.endpoint]
        path = _PARAM.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = _operation(rule, view, method, components)
            if operation["operationId"] in seen:
                raise RuntimeError(f"two operations are called {operation['operationId']}: "
                                   f"{seen[operation['operationId']]} and {method} {path}")
            seen[operation["operationId"]] = f"{method} {path}"
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Millrace API", "version": "1", "description": _ABOUT},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a token from `millrace tokens create`"},
                "hook": {"type": "http", "scheme": "bearer",
                         "description": "the flow's webhook token (PUT /api/v1/flows/{flow_id}/webhook)"},
            },
        },
    }


_ABOUT = """Flows, scripts, runs, schedules, variables, tokens and the audit trail of Millrace.

Every list pages the same way: send `limit` (and, after the first page, `cursor` = the
`next_cursor` of the page before); `next_cursor` is null on the last page. Every error is an
RFC 9457 problem document (`application/problem+json`); a 422 lists each invalid place in
`errors`. While the database is unreachable every route but `/healthz` answers 503 with
`Retry-After`. Starting a run is idempotent with an `Idempotency-Key` header."""


def _operation(rule: Any, view: Any, method: str, components: dict[str, Any]) -> dict[str, Any]:
    summary, _, description = _markdown(view.__doc__ or rule.endpoint).partition("\n")
    name = rule.endpoint.rsplit(".", 1)[-1]
    tag = rule.endpoint.split(".")[-2] if rule.endpoint.count(".") >= 1 else rule.endpoint
    parameters: list[dict[str, Any]] = [{
        "name": param, "in": "path", "required": True,
        "schema": {"type": "integer", "minimum": 0} if param in _INT_PARAM.findall(rule.rule) else {"type": "string"}}
        for param in _PARAM.findall(rule.rule)]
    if (model := getattr(view, "millrace_query", None)) is not None:
        parameters += _parameters(model, "query", components)
    if (model := getattr(view, "millrace_headers", None)) is not None:
        parameters += _parameters(model, "header", components)
    operation: dict[str, Any] = {
        "operationId": name, "summary": summary.strip(), "tags": [tag], "parameters": parameters,
        "responses": {str(status): _success(status, *answer, components)
                      for status, answer in sorted(getattr(view, "millrace_returns", {}).items())},
    }
    if not operation["responses"]:
        raise RuntimeError(f"{rule.endpoint} declares no answer (api.schemas.returns)")
    if description.strip():
        operation["description"] = description.strip()
    errors = {422, *getattr(view, "millrace_fails", ())}
    permission = getattr(view, "millrace_permission", None)
    if permission is not None:
        operation["security"] = [{"bearer": []}]
        operation["x-permission"] = permission.value
        errors |= {401, 403}
    if getattr(view, "millrace_security", None):
        operation["security"] = [{view.millrace_security: []}]
        errors.add(401)
    if name != "healthz":
        errors.add(503)  # everything else reads the database
    if _PARAM.search(rule.rule):
        errors.add(404)
    body = getattr(view, "millrace_body", None)
    if body is not None:
        operation["requestBody"] = {"required": False, "content": {
            "application/json": {"schema": {"$ref": _register(body, components)}}}}
    if getattr(view, "millrace_free_body", False):
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "description": "the run's inputs"}}}}
    if getattr(view, "millrace_document", False):
        ref = {"$ref": _register(Flow, components)}
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": ref}, "application/yaml": {"schema": ref}}}
    if "requestBody" in operation:
        errors |= {413, 415}
    problem = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for status in sorted(errors):
        operation["responses"][str(status)] = {"description": _ERRORS[status], **problem,
                                               **({"headers": _RETRY_AFTER} if status == 503 else {})}
    return operation


def _markdown(doc: str) -> str:
    """A docstring as CommonMark: its lines joined into paragraphs, RST's ``code`` as `code`."""
    paragraphs = [" ".join(line.strip() for line in block.splitlines()) for block in doc.strip().split("\n\n")]
    return "\n".join(paragraphs).replace("``", "`")


def _parameters(model: Any, where: str, components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    _keep(schema.pop("$defs", {}), components)
    required = set(schema.get("required", ()))
    found = []
    gathered = set(getattr(model, "prefixed", {}).values())  # `inputs.NAME=...`: no one name to document
    for name, prop in schema.get("properties", {}).items():
        if name in gathered:
            continue
        prop = dict(prop)
        prop.pop("title", None)
        description = prop.pop("description", None)
        if "anyOf" in prop:  # `X | None`: absent is the None; a parameter cannot be sent as null
            kept = [branch for branch in prop.pop("anyOf") if branch.get("type") != "null"]
            prop = {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **prop}
        if prop.get("default") is None:
            prop.pop("default", None)
        parameter = {"name": name, "in": where, "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        found.append(parameter)
    return found


def _success(status: int, model: Any, media: str, headers: dict[str, str],
             components: dict[str, Any]) -> dict[str, Any]:
    meaning = {200: "done", 201: "created", 202: "accepted: it goes on; follow the link",
               204: "done, nothing to return"}[status]
    answer: dict[str, Any] = {"description": (model.__doc__ or meaning).strip().splitlines()[0]
                              if model is not None and model.__doc__ else meaning}
    if model is not None:
        answer["content"] = {media: {"schema": {"$ref": _register(model, components, mode="serialization")}}}
    elif status != 204:
        answer["content"] = {media: {"schema": {"type": "object" if media == "application/json" else "string"}}}
    if headers:
        answer["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                             for name, text in headers.items()}
    return answer


def _register(model: Any, components: dict[str, Any], mode: str = "validation") -> str:
    if model is Flow:  # with an example of every construct, as `millrace schema` prints it
        schema = flow_schema(ref_template="#/components/schemas/{model}", mode=mode)
    else:
        schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}", mode=mode)
    _keep(schema.pop("$defs", {}), components)
    _keep({model.__name__: schema}, components)
    return f"#/components/schemas/{model.__name__}"


def _keep(schemas: dict[str, Any], components: dict[str, Any]) -> None:
    """Add ``schemas`` to the document's components; one name is one schema."""
    for name, schema in schemas.items():
        if components.setdefault(name, schema) != schema:
            raise RuntimeError(f"two different schemas are called {name}: rename one model")


@blueprint.get("/openapi.json")
@requires(Permission.READ)
@returns(200)
def openapi() -> Response:
    """This API's OpenAPI 3.1 document."""
    return jsonify(build(current_app))


_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Millrace API</title>
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
  <style>
    body {{ margin: 0; font-family: sans-serif; }}
    #token {{ padding: 12px 20px; background: #1b1b1b; color: #eee; }}
    #token input {{ width: 28em; font-family: monospace; }}
  </style>
</head>
<body>
  <form id="token">
    <label>API token <input name="value" type="password" autocomplete="off"
      placeholder="from `millrace tokens create`"></label>
    <button>Use</button>
  </form>
  <div id="ui"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script>
    const KEY = "millrace-token";
    const form = document.getElementById("token");
    function show(token) {{
      SwaggerUIBundle({{
        url: "{spec}", dom_id: "#ui", deepLinking: true, tryItOutEnabled: true,
        requestInterceptor: (req) => {{ req.headers.Authorization = "Bearer " + token; return req; }},
      }});
    }}
    form.addEventListener("submit", (event) => {{
      event.preventDefault();
      sessionStorage.setItem(KEY, form.value.value);
      show(form.value.value);
    }});
    // A token may come in the fragment (never sent to a server or written to a log): kept
    // for this tab, then taken out of the address bar.
    const given = new URLSearchParams(location.hash.slice(1)).get("token");
    if (given) {{ sessionStorage.setItem(KEY, given); history.replaceState(null, "", location.pathname); }}
    const saved = sessionStorage.getItem(KEY);
    if (saved) {{ form.value.value = saved; show(saved); }}
  </script>
</body>
</html>
"""


def docs_page() -> Response:
    """Interactive docs (Swagger UI) for the OpenAPI document.

    The page itself holds no data, so it is served without a token: it asks for one and
    sends it with every request it makes, the OpenAPI document's included.
    """
    settings = current_app.extensions["millrace"]["settings"]
    assets = settings.docs_assets or url_for("docs_assets", name="").rstrip("/")
    html = _DOCS_PAGE.format(assets=escape(assets), spec=url_for("v1.openapi.openapi"))
    return Response(html, mimetype="text/html")


_ASSETS = importlib.resources.files("flask_openapi3_swagger") / "templates" / "swagger"
_ASSET_FILES = {"swagger-ui.css": ("css/swagger-ui.css", "text/css"),
                "swagger-ui-bundle.js": ("js/swagger-ui-bundle.js", "text/javascript")}


def docs_asset(name: str) -> Response:
    """Swagger UI's own files, from the installed package: the docs page needs no network."""
    found = _ASSET_FILES.get(name)
    if found is None:
        raise NotFound(f"no docs asset '{name}'")
    path, mimetype = found
    response = Response((_ASSETS / path).read_bytes(), mimetype=mimetype)
    response.cache_control.max_age = 86400
    response.cache_control.public = True
    return response
