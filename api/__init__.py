"""The Flask API: ``create_app`` builds it; one blueprint per resource."""
from api.app import create_app

__all__ = ["create_app"]
