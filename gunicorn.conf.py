"""gunicorn reads this from the working directory: ``gunicorn api.wsgi:app`` from the
repository root serves the API as ``millrace api`` does (see api/gunicorn_settings.py)."""
from api.gunicorn_settings import *  # noqa: F403
