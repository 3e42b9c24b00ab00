"""Access logs that never hold a secret: a ``token`` in a URL's query (refused by the API,
but a client may still send one) is written as ``token=***``, an approval link's signed
token (``/approvals/<token>``) as ``/approvals/***``."""
from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

_SECRET = re.compile(r"(?i)((?:^|[?&;])(?:token|access_token|api_key)=)[^&;\s\"]*")
_LINK = re.compile(r"(/approvals/)[A-Za-z0-9_.-]+")


def redact(text: str) -> str:
    return _LINK.sub(r"\1***", _SECRET.sub(r"\1***", text))


class RedactingLogger(Logger):
    """gunicorn's logger (``--logger-class api.access_log.RedactingLogger``) with the query
    string and request line of each access line redacted."""

    def atoms(self, resp: Any, req: Any, environ: dict, request_time: Any) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "q", "U"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms


class RedactingFilter(logging.Filter):
    """The same for the development server's (werkzeug's) request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(str(record.msg))
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True
