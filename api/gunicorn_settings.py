"""gunicorn's settings for Millrace's API (``millrace api`` passes them as
``--config python:api.gunicorn_settings``; ``gunicorn api.wsgi:app`` run from the repository
root reads them through ``gunicorn.conf.py``, which imports this module).

Threaded workers: a request waiting for its run (``?wait=`` up to 300 s) holds a thread, not
a process, so twenty of them leave the others answering. The timeout is above the longest
wait, so gunicorn never kills a worker that is only waiting.
"""
import os

worker_class = "gthread"
workers = int(os.environ.get("MILLRACE_API_WORKERS", "2"))
threads = int(os.environ.get("MILLRACE_API_THREADS", "32"))
timeout = 330  # > api.runs.MAX_WAIT_S (300)
graceful_timeout = 30
accesslog = "-"
logger_class = "api.access_log.RedactingLogger"  # a token in a URL is never written in clear
