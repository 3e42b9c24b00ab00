"""The OpenAPI 3.1 document, built from the routes themselves and the models that validate them."""
from __future__ import annotations

import importlib.resources
import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, url_for
from markupsafe import escape

from api.auth import requires
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
_SUCCESS = {"GET": 200, "PUT": 200, "POST": 200, "PATCH": 200, "DELETE": 204}
_MEANING = {200: "done", 201: "created", 202: "accepted: it goes on; poll the link", 204: "done, nothing to return"}


def build(app: Flask) -> dict[str, Any]:
    """Every route of ``app`` with its permission, parameters, body and error shape."""
    components: dict[str, Any] = {"Problem": _PROBLEM}
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in ("static", "docs", "docs_assets"):
            continue
        view = app.view_functions[rule.endpoint]
        path = _PARAM.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, view, method, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Millrace API", "version": "1"},
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


def _operation(rule: Any, view: Any, method: str, components: dict[str, Any]) -> dict[str, Any]:
    doc = (view.__doc__ or rule.endpoint).strip().splitlines()[0]
    problem = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    operation: dict[str, Any] = {
        "operationId": rule.endpoint.replace(".", "_"),
        "summary": doc,
        "tags": [rule.endpoint.split(".")[-2] if rule.endpoint.count(".") > 1 else rule.endpoint.split(".")[0]],
        "parameters": [{"name": name, "in": "path", "required": True, "schema": {
            "type": "integer" if name in _INT_PARAM.findall(rule.rule) else "string"}}
            for name in _PARAM.findall(rule.rule)],
        "responses": {
            **{str(status): _success(status, getattr(view, "millrace_produces", "application/json"))
               for status in getattr(view, "millrace_statuses", ()) or (_SUCCESS[method],)},
            "4XX": {"description": "the request cannot be done; see detail and errors", **problem},
        },
    }
    permission = getattr(view, "millrace_permission", None)
    if permission is not None:
        operation["security"] = [{"bearer": []}]
        operation["x-permission"] = permission.value
    if getattr(view, "millrace_security", None):
        operation["security"] = [{view.millrace_security: []}]
    if getattr(view, "millrace_free_body", False):
        operation["requestBody"] = {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "description": "the run's inputs"}}}}
    body = getattr(view, "millrace_body", None)
    if body is not None:
        operation["requestBody"] = {"required": False, "content": {
            "application/json": {"schema": {"$ref": _register(body, components)}}}}
    if getattr(view, "millrace_document", False):
        ref = {"$ref": _register(Flow, components)}
        operation["requestBody"] = {"required": True, "content": {
            "application/yaml": {"schema": ref}, "application/json": {"schema": ref}}}
    return operation


def _success(status: int, media: str) -> dict[str, Any]:
    if status == 204:
        return {"description": _MEANING[status]}
    schema = {"type": "object"} if media == "application/json" else {"type": "string"}
    return {"description": _MEANING[status], "content": {media: {"schema": schema}}}


def _register(model: Any, components: dict[str, Any]) -> str:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return f"#/components/schemas/{model.__name__}"


@blueprint.get("/openapi.json")
@requires(Permission.READ)
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
