"""Settings, Celery and logging configuration; imported by every part, imports none of them."""
