"""The API for a WSGI server: ``gunicorn api.wsgi:app`` (what ``millrace api`` runs)."""
from orchestrator.cli.wiring import api_app

app = api_app()
