"""What a worker process keeps between tasks: its engine, plans by flow version, executors."""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from celery.signals import worker_process_init
from sqlalchemy import Engine

from config.settings import Settings
from orchestrator.db import make_engine
from orchestrator.deps import (
    environment,
    index_of,
    lock_for,
    node_modules,
    npm_lock_for,
    npm_requirements_of,
    requirements_of,
    third_party_imports,
)
from orchestrator.executors.bash import BashExecutor
from orchestrator.executors.javascript import JavaScriptExecutor
from orchestrator.executors.python import PythonExecutor
from orchestrator.executors.sql import SqlExecutor
from orchestrator.parser import flow_from_data
from orchestrator.plan import Plan, build_plan
from orchestrator.records import SCRIPTS, get_version, load_flow_document


class Runtime:
    """Per-process resources, created lazily (after the pool forks).

    Plain lazy attributes, not ``functools.cached_property``: on Python 3.11 that holds a
    lock shared by all instances while it computes, and a pool process forked while the
    sweeper thread held it would wait on it forever.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._plans: dict[tuple[str, int], Plan] = {}
        self._scripts: dict[tuple[str, int], tuple[str, str]] = {}
        self._engine: Engine | None = None
        self._python: PythonExecutor | None = None
        self._bash: BashExecutor | None = None
        self._javascript: JavaScriptExecutor | None = None
        # What never changes for a given code or requirement set, computed once per process:
        # requirements and imports read from code, kept locks, environments' executors.
        self._requirements: dict[tuple[str, str], list[str]] = {}
        self._locks: dict[tuple[str, ...], str] = {}
        self._environments: dict[tuple[str, ...], PythonExecutor] = {}
        self._index = index_of(settings)
        self._sql: SqlExecutor | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    def plan(self, flow_id: str, version: int) -> Plan:
        """The plan of a flow version; built once per process, versions are immutable."""
        key = (flow_id, version)
        plan = self._plans.get(key)
        if plan is None:
            _, document = load_flow_document(self.engine, flow_id, version)
            plan = self._plans[key] = build_plan(flow_from_data(document), version)
        return plan

    def plan_of(self, flow_id: str, version: int | None) -> Plan:
        """Like :meth:`plan`; version None: the latest saved version, read now."""
        if version is None:
            version, _ = load_flow_document(self.engine, flow_id)
        return self.plan(flow_id, version)

    def script(self, path: str, version: int) -> tuple[str, str]:
        """A saved script version's language and code; read once per process (immutable)."""
        key = (path, version)
        found = self._scripts.get(key)
        if found is None:
            row = get_version(self.engine, SCRIPTS, path, version)
            found = self._scripts[key] = (row["language"], row["code"])
        return found

    def python_for(self, code: str) -> PythonExecutor:
        """The executor for a Python step: this interpreter when the code needs nothing beyond
        the standard library, else a fork server in the environment built for its lock."""
        requirements = _memo(self._requirements, ("python", code), lambda: requirements_of(code))
        if not requirements:
            return self.python
        lock = _memo(self._locks, ("python", *requirements),  # a kept lock never changes
                     lambda: lock_for(self.engine, requirements, self._index))
        python = str(environment(self.settings.home, lock, self._index))
        # one fork server per environment and set of imports, which it imports ahead of the
        # steps: a step with dependencies starts as fast as one without
        preload = ("json", *_memo(self._requirements, ("imports", code), lambda: third_party_imports(code)))
        return _memo(self._environments, (python, *preload), lambda: PythonExecutor(
            python=python, preload=preload, log_limit=self.settings.log_limit))

    def node_modules_for(self, code: str) -> Path | None:
        """Where a JavaScript step's npm imports resolve: the modules installed for its lock."""
        packages = _memo(self._requirements, ("javascript", code), lambda: npm_requirements_of(code))
        if not packages:
            return None
        lock = _memo(self._locks, ("javascript", *packages),
                     lambda: npm_lock_for(self.engine, packages, self._index.npm_registry))
        return node_modules(self.settings.home, packages, lock)

    @property
    def python(self) -> PythonExecutor:
        if self._python is None:
            self._python = PythonExecutor(log_limit=self.settings.log_limit)
        return self._python

    @property
    def javascript(self) -> JavaScriptExecutor:
        if self._javascript is None:
            self._javascript = JavaScriptExecutor(log_limit=self.settings.log_limit)
        return self._javascript

    @property
    def sql(self) -> SqlExecutor:
        if self._sql is None:
            self._sql = SqlExecutor(row_limit=self.settings.sql_row_limit)
        return self._sql

    @property
    def bash(self) -> BashExecutor:
        if self._bash is None:
            self._bash = BashExecutor(log_limit=self.settings.log_limit)
        return self._bash


T = TypeVar("T")


def _memo(cache: dict[Any, T], key: Any, make: Callable[[], T]) -> T:
    found = cache.get(key)
    if found is None:
        found = cache[key] = make()
    return found


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
