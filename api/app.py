"""The application factory: configuration comes in, the app goes out."""
from __future__ import annotations

from flask import Flask
from sqlalchemy import Engine

from api import auth, errors, flows, health
from config.settings import Settings
from orchestrator.db import make_engine
from orchestrator.parser import MAX_DOCUMENT_BYTES


def create_app(settings: Settings, engine: Engine | None = None) -> Flask:
    """A Flask app serving the Millrace API on ``engine`` (made from settings when omitted)."""
    app = Flask("millrace")
    app.config["MAX_CONTENT_LENGTH"] = MAX_DOCUMENT_BYTES + 4096
    app.extensions["millrace"] = {"settings": settings, "engine": engine or make_engine(settings.database_url)}
    errors.register(app)
    app.register_blueprint(health.blueprint)
    v1 = auth.protected_blueprint("v1", "/api/v1")
    v1.register_blueprint(flows.blueprint)
    app.register_blueprint(v1)
    return app
