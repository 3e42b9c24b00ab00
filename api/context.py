"""What a request handler reads from the app it runs in."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import Engine

from config.settings import Settings


def engine() -> Engine:
    return current_app.extensions["millrace"]["engine"]


def settings() -> Settings:
    return current_app.extensions["millrace"]["settings"]
