"""What a worker process keeps between tasks: its engine, plans by flow version, executors."""
from __future__ import annotations

import os
import socket
from functools import cached_property

from celery.signals import worker_process_init
from orchestrator.executors.bash import BashExecutor
from orchestrator.executors.python import PythonExecutor
from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.db import make_engine
from orchestrator.parser import flow_from_data
from orchestrator.plan import Plan, build_plan
from orchestrator.records import load_flow_document


class Runtime:
    """Per-process resources, created lazily (after the pool forks)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._plans: dict[tuple[str, int], Plan] = {}

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    def plan(self, flow_id: str, version: int) -> Plan:
        """The plan of a flow version; built once per process, versions are immutable."""
        key = (flow_id, version)
        plan = self._plans.get(key)
        if plan is None:
            _, document = load_flow_document(self.engine, flow_id, version)
            plan = self._plans[key] = build_plan(flow_from_data(document), version)
        return plan

    @cached_property
    def python(self) -> PythonExecutor:
        return PythonExecutor(log_limit=self.settings.log_limit)

    @cached_property
    def bash(self) -> BashExecutor:
        return BashExecutor(log_limit=self.settings.log_limit)

    def close(self) -> None:
        if "python" in self.__dict__:
            self.python.close()
        if "engine" in self.__dict__:
            self.engine.dispose()


_runtime: Runtime | None = None


def runtime(settings: Settings) -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(settings)
    return _runtime


@worker_process_init.connect
def _fresh_after_fork(**_: object) -> None:
    # A forked pool process must not share its parent's connections or fork server.
    global _runtime
    _runtime = None
