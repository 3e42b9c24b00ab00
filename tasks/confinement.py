"""Whether this worker's steps run in the sandbox, decided once when the worker starts.

A production worker (a broker and a database configured) with ``MILLRACE_SANDBOX=on`` (the
default) refuses to start when the sandbox cannot start here, and says what to install.
``MILLRACE_SANDBOX=off`` runs steps unconfined, with a warning at every start; local mode
warns and runs unconfined when the machine cannot sandbox. The pool processes forked after
the decision inherit it.
"""
from __future__ import annotations

import logging

from celery.signals import worker_init

from config.settings import Settings
from orchestrator.executors.sandbox import Sandbox, SandboxUnavailable, check, step_user

log = logging.getLogger("millrace.sandbox")
_decided: dict[str, Sandbox | None] = {}


def sandbox_of(settings: Settings) -> Sandbox | None:
    """The sandbox of this worker's steps (decided at its start, or now when not yet)."""
    if "sandbox" not in _decided:
        _decided["sandbox"] = _decide(settings)
    return _decided["sandbox"]


def _decide(settings: Settings) -> Sandbox | None:
    if settings.sandbox == "off":
        log.warning("MILLRACE_SANDBOX=off: steps run UNCONFINED, as the worker's user, and can read its "
                    "environment (database and broker credentials, the secret key) and files")
        return None
    try:
        uid, gid = step_user(settings.step_user)
        sandbox = Sandbox(uid, gid, hidden=(settings.home, *settings.sandbox_hide))
        check(sandbox)
    except SandboxUnavailable as exc:
        if settings.local:
            log.warning("steps run UNCONFINED in local mode: %s", exc)
            return None
        raise SystemExit(f"the step sandbox cannot start on this worker: {exc}") from None
    log.info("steps run sandboxed as %s (uid %d)", settings.step_user, uid)
    return sandbox


@worker_init.connect
def _decide_at_start(**_: object) -> None:
    from tasks.app import settings

    sandbox_of(settings)
