"""What a Python step imports, installed for it: requirements, locks, environments.

* **Requirements** come from the code: a PEP 723 block (``# /// script`` with
  ``dependencies = [...]``) when there is one, else the top-level imports that are neither
  the standard library nor Millrace's own packages, mapped to distribution names
  (``yaml`` -> ``PyYAML``; the map is ``import_names.json``, data to extend).
* A **lock** is the exact versions uv resolves them to. Locks are kept in Postgres
  (``dependency_locks``, keyed by the requirements) when a script or flow is saved, or at a
  step's first run: a run months later installs the same versions.
* An **environment** is a virtualenv per lock, built by uv into ``MILLRACE_HOME/envs/<hash>``,
  shared by the workers of a machine, built once under a file lock (whoever waits finds it
  built), marked complete only when done (a half-built one is rebuilt), reused across runs.
  Each environment gets its own fork server, so its steps start as fast as others.
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from orchestrator import records
from orchestrator.errors import FlowError, Problem, ValidationError
from orchestrator.flow import Flow, PythonStep
from orchestrator.validation import walk_steps

OWN_PACKAGES = frozenset({"orchestrator", "tasks", "api", "config", "__future__"})
_IMPORT_NAMES: dict[str, str] = json.loads((Path(__file__).with_name("import_names.json")).read_text())
_PEP723 = re.compile(r"(?m)^# /// script\s*$\n((?:^#(?: .*)?$\n)+?)^# ///\s*$")
COMPLETE = ".millrace-complete"


class DependencyError(FlowError):
    """Requirements that cannot be resolved or installed; the message is uv's own."""


def requirements_of(code: str) -> list[str]:
    """The distributions ``code`` needs: its PEP 723 dependencies, else its imports."""
    block = _PEP723.search(code)
    if block is not None:
        toml = "\n".join(line[2:] if line.startswith("# ") else line[1:] for line in block.group(1).splitlines())
        try:
            declared = tomllib.loads(toml).get("dependencies", [])
        except tomllib.TOMLDecodeError as exc:
            raise DependencyError(f"the `# /// script` block is not valid TOML: {exc}") from None
        return sorted(set(map(str, declared)))
    return sorted({_IMPORT_NAMES.get(name, name) for name in third_party_imports(code)})


def third_party_imports(code: str) -> list[str]:
    """The top-level modules ``code`` imports that are neither the standard library nor
    Millrace's own (what its environment's fork server imports ahead of every step)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []  # the executor reports the syntax error itself
    roots = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return sorted(roots - set(sys.stdlib_module_names) - OWN_PACKAGES)


def requirements_key(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()


@dataclass(frozen=True)
class Index:
    """Where packages come from (MILLRACE_PIP_INDEX_URL, MILLRACE_PIP_EXTRA_INDEX_URLS)."""

    url: str | None = None
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        out = ["--index-url", self.url] if self.url else []
        for extra in self.extra:
            out += ["--extra-index-url", extra]
        return out


def lock_for(engine: Engine, requirements: list[str], index: Index) -> str:
    """The lock of ``requirements``: the one kept before, else resolved now and kept."""
    key = requirements_key(requirements)
    table = records.dependency_locks
    with engine.connect() as conn:
        found = conn.execute(select(table.c.lock).where(table.c.key == key)).scalar()
    if found is not None:
        return found
    lock = resolve(requirements, index)
    with engine.begin() as conn:
        conn.execute(records.dialect_insert(conn, table).values(
            key=key, requirements=requirements, lock=lock, created_at=records.now()).on_conflict_do_nothing())
        return conn.execute(select(table.c.lock).where(table.c.key == key)).scalar_one()


def resolve(requirements: list[str], index: Index) -> str:
    """Exact versions for ``requirements`` (uv pip compile), one ``name==version`` a line."""
    done = _uv(["pip", "compile", "-", "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}",
                "--no-header", "--no-annotate", "--quiet", *index.args()], stdin="\n".join(requirements))
    return done.strip() + "\n"


def environment(home: Path, lock: str, index: Index) -> Path:
    """The Python of the environment for ``lock``, built now if no complete one exists."""
    digest = environment_name(lock)
    folder = home / "envs" / digest
    python = folder / "bin" / "python"
    if (folder / COMPLETE).exists() and python.exists():
        (folder / COMPLETE).touch()  # last used: what `millrace deps prune` looks at
        return python
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_suffix(".lock"), "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # one builder per machine; the others wait here
        if (folder / COMPLETE).exists() and python.exists():
            return python  # built while we waited
        shutil.rmtree(folder, ignore_errors=True)  # half-built or broken: start over
        _uv(["venv", "--quiet", "--python", sys.executable, str(folder)])
        (folder / "requirements.lock").write_text(lock)
        _uv(["pip", "install", "--quiet", "--python", str(python), "--no-deps", "-r",
             str(folder / "requirements.lock"), *index.args()])
        (folder / COMPLETE).write_text(json.dumps({"built_at": time.time(), "lock": lock}))
        with open(folder.parent / "builds.log", "a") as log:  # one line per build: how often it happens
            log.write(f"{digest} {time.time():.3f} {os.getpid()}\n")
    return python


def environment_name(lock: str) -> str:
    return hashlib.sha256(lock.encode()).hexdigest()[:20]


def prune(home: Path, older_than_days: float) -> list[str]:
    """Remove environments not used for ``older_than_days``; returns their names."""
    cutoff = time.time() - older_than_days * 86400
    removed = []
    for folder in sorted((home / "envs").glob("*")):
        if not folder.is_dir():
            continue
        marker = folder / COMPLETE
        used = marker.stat().st_mtime if marker.exists() else folder.stat().st_mtime
        if used < cutoff:
            with open(folder.with_suffix(".lock"), "w") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def _uv(args: list[str], stdin: str | None = None) -> str:
    uv = shutil.which("uv", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if uv is None:
        raise DependencyError("uv is not installed on this worker")
    done = subprocess.run([uv, *args], input=stdin, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "UV_NO_PROGRESS": "1"})
    if done.returncode != 0:
        message = "\n".join(line for line in done.stderr.strip().splitlines() if line.strip())
        raise DependencyError(message or f"uv {args[0]} failed with code {done.returncode}")
    return done.stdout


def describe(requirements: list[str], lock: str | None) -> dict[str, Any]:
    """What the API shows about a script's dependencies."""
    return {"requirements": requirements, "lock": lock.splitlines() if lock else []}


def lock_code(engine: Engine, code: str, index: Index, path: str) -> dict[str, Any]:
    """Resolve and keep the lock of ``code``'s requirements now (when a script or flow is
    saved); a ValidationError at ``path`` carries uv's message if they do not resolve."""
    try:
        requirements = requirements_of(code)
        lock = lock_for(engine, requirements, index) if requirements else None
    except DependencyError as exc:
        raise ValidationError([Problem(path, f"dependencies do not resolve: {exc}")]) from None
    return describe(requirements, lock)


def lock_flow(engine: Engine, flow: Flow, index: Index) -> None:
    """Lock the requirements of every Python step of ``flow`` (see :func:`lock_code`)."""
    problems = []
    for step, path in walk_steps(flow):
        if isinstance(step, PythonStep):
            try:
                lock_code(engine, step.python, index, f"{path}.python")
            except ValidationError as exc:
                problems += exc.problems
    if problems:
        raise ValidationError(problems)


def index_of(settings: Any) -> Index:
    """The package index the settings name (MILLRACE_PIP_INDEX_URL, MILLRACE_PIP_EXTRA_INDEX_URLS)."""
    return Index(settings.pip_index_url or None, tuple(settings.pip_extra_index_urls))


def dependencies_of(engine: Engine, code: str) -> dict[str, Any]:
    """A Python script's requirements and the lock kept for them (empty if none yet)."""
    requirements = requirements_of(code)
    if not requirements:
        return describe([], None)
    with engine.connect() as conn:
        lock = conn.execute(select(records.dependency_locks.c.lock).where(
            records.dependency_locks.c.key == requirements_key(requirements))).scalar()
    return describe(requirements, lock)
