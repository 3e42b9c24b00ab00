"""What a request handler reads from the app it runs in."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.services.publisher import Publisher, Revoke


def engine() -> Engine:
    return current_app.extensions["millrace"]["engine"]


def settings() -> Settings:
    return current_app.extensions["millrace"]["settings"]


def publisher() -> Publisher:
    """Records go out through this: it sends what a request made owed, then marks it done."""
    return current_app.extensions["millrace"]["publisher"]


def revoke() -> Revoke:
    return current_app.extensions["millrace"]["revoke"]


def workers() -> list:
    return current_app.extensions["millrace"]["workers"]()
