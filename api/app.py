"""The application factory: configuration comes in, the app goes out."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy import Engine

from api import (
    approvals,
    audit,
    auth,
    console,
    errors,
    flows,
    health,
    hooks,
    openapi,
    runs,
    schedules,
    scripts,
    tokens,
    triggers,
    variables,
)
from config.settings import Settings
from orchestrator.definitions.parser import MAX_DOCUMENT_BYTES
from orchestrator.services.publisher import Publisher, Revoke, Send
from orchestrator.services.runs import stored_plans


def create_app(settings: Settings, engine: Engine, send: Send, revoke: Revoke,
               workers: Callable[[], list[dict[str, Any]]] | None = None) -> Flask:
    """A Flask app serving the Millrace API; ``send`` publishes what it starts, ``revoke`` kills
    the tasks of what it cancels, ``workers`` says who is up (the console's workers page)."""
    app = Flask("millrace")
    app.config["MAX_CONTENT_LENGTH"] = MAX_DOCUMENT_BYTES + 4096
    publisher = Publisher(engine, send, stored_plans(engine))
    app.extensions["millrace"] = {"settings": settings, "engine": engine, "publisher": publisher, "revoke": revoke,
                                  "workers": workers or (lambda: [])}
    errors.register(app)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(health.metrics_blueprint)
    v1 = auth.protected_blueprint("v1", "/api/v1")
    v1.register_blueprint(flows.blueprint)
    v1.register_blueprint(scripts.blueprint)
    v1.register_blueprint(runs.blueprint)
    v1.register_blueprint(approvals.blueprint)
    v1.register_blueprint(schedules.blueprint)
    v1.register_blueprint(triggers.blueprint)
    v1.register_blueprint(hooks.blueprint)
    v1.register_blueprint(audit.blueprint)
    v1.register_blueprint(variables.blueprint)
    v1.register_blueprint(tokens.blueprint)
    v1.register_blueprint(openapi.blueprint)
    app.register_blueprint(v1)
    app.add_url_rule("/api/v1/docs", "docs", openapi.docs_page)  # a page without data: no token
    app.add_url_rule("/api/v1/docs/assets/<name>", "docs_assets", openapi.docs_asset)
    app.register_blueprint(console.blueprint)  # the web console at /
    if settings.proxy_hops:  # believe that many proxies' X-Forwarded-Proto and -Host, no more
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=settings.proxy_hops,  # type: ignore[method-assign]
                                x_host=settings.proxy_hops)
    return app
