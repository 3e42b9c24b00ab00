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
from orchestrator.definitions.requirements import npm_requirements_of, requirements_of, third_party_imports
from orchestrator.execution.plan import Plan, PlanCache
from orchestrator.executors.base import Executor, Limits
from orchestrator.executors.bash import BashExecutor
from orchestrator.executors.environments import environment, node_modules
from orchestrator.executors.javascript import JavaScriptExecutor
from orchestrator.executors.python import PythonExecutor
from orchestrator.executors.sandbox import Sandbox
from orchestrator.executors.sql import SqlExecutor
from orchestrator.services.dependencies import index_of, lock_for, npm_lock_for
from orchestrator.services.limits import defaults, maxima
from orchestrator.services.publisher import Publisher
from orchestrator.services.runs import stored_plans
from orchestrator.services.typescript import javascript_for
from orchestrator.store.database import make_engine
from orchestrator.store.versions import SCRIPTS, get_version
from tasks.app import send
from tasks.confinement import sandbox_of


class Runtime:
    """Per-process resources, created lazily (after the pool forks).

    Plain lazy attributes, not ``functools.cached_property``: on Python 3.11 that holds a
    lock shared by all instances while it computes, and a pool process forked while the
    sweeper thread held it would wait on it forever.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._plans: PlanCache | None = None
        self._publisher: Publisher | None = None
        self._scripts: dict[tuple[str, int], tuple[str, str]] = {}
        self._engine: Engine | None = None
        self._python: PythonExecutor | None = None
        self._bash: BashExecutor | None = None
        self._javascript: JavaScriptExecutor | None = None
        # What never changes for a given code or requirement set, computed once per process:
        # requirements and imports read from code, kept locks, environments' executors.
        self._requirements: dict[tuple[str, str], list[str]] = {}
        self._javascript_of: dict[str, str] = {}  # TypeScript -> the JavaScript kept for it
        self._locks: dict[tuple[str, ...], str] = {}
        self._environments: dict[tuple[str, ...], PythonExecutor] = {}
        self._index = index_of(settings)
        self._sql: SqlExecutor | None = None

    @property
    def limits(self) -> Limits:
        """What a step may use unless it asks for less or (up to the maxima) more."""
        return defaults(self.settings)

    @property
    def ceiling(self) -> Limits:
        """The most a step may ask for (what it asks past that, it does not get)."""
        return maxima(self.settings)

    @property
    def sandbox(self) -> Sandbox | None:
        """The sandbox steps run in; None when the worker runs them unconfined
        (``MILLRACE_SANDBOX=off``, or local mode on a machine that cannot sandbox)."""
        return sandbox_of(self.settings)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    def plan(self, flow_id: str, version: int | None) -> Plan:
        """The plan of a flow version (None: the latest); built once per process."""
        if self._plans is None:
            self._plans = stored_plans(self.engine)
        return self._plans.plan(flow_id, version)

    @property
    def publisher(self) -> Publisher:
        """What this process sends through: record, then send, then mark sent."""
        if self._publisher is None:
            self._publisher = Publisher(self.engine, send, self)
        return self._publisher

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
            python=python, preload=preload, limits=self.limits, sandbox=self.sandbox))

    def node_modules_for(self, code: str) -> Path | None:
        """Where a JavaScript step's npm imports resolve: the modules installed for its lock."""
        packages = _memo(self._requirements, ("javascript", code), lambda: npm_requirements_of(code))
        if not packages:
            return None
        lock = _memo(self._locks, ("javascript", *packages),
                     lambda: npm_lock_for(self.engine, packages, self._index.npm_registry))
        return node_modules(self.settings.home, packages, lock)

    def javascript_for(self, typescript: str) -> str:
        """The JavaScript kept for a TypeScript step's code when it was saved (transpiled now
        only if it never was), read once per process."""
        return _memo(self._javascript_of, typescript, lambda: javascript_for(
            self.engine, typescript, self.settings.home, self._index.npm_registry))

    def executor(self, language: str, code: str) -> Executor:
        """The executor of a step's language (Python's chosen by the packages ``code`` needs)."""
        if language == "python":
            return self.python_for(code)
        return getattr(self, language)  # bash, javascript, sql: one per process, made when first used

    @property
    def python(self) -> PythonExecutor:
        if self._python is None:
            self._python = PythonExecutor(limits=self.limits, sandbox=self.sandbox)
        return self._python

    @property
    def javascript(self) -> JavaScriptExecutor:
        if self._javascript is None:
            self._javascript = JavaScriptExecutor(limits=self.limits, sandbox=self.sandbox)
        return self._javascript

    @property
    def sql(self) -> SqlExecutor:
        if self._sql is None:
            self._sql = SqlExecutor(row_limit=self.settings.sql_row_limit)
        return self._sql

    @property
    def bash(self) -> BashExecutor:
        if self._bash is None:
            self._bash = BashExecutor(limits=self.limits, sandbox=self.sandbox)
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
