"""What a request handler reads from the app it runs in."""
from __future__ import annotations

from flask import current_app
from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.submission import Revoke, Send


def engine() -> Engine:
    return current_app.extensions["millrace"]["engine"]


def settings() -> Settings:
    return current_app.extensions["millrace"]["settings"]


def send() -> Send:
    return current_app.extensions["millrace"]["send"]


def revoke() -> Revoke:
    return current_app.extensions["millrace"]["revoke"]
