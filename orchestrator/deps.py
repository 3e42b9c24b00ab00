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
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from orchestrator import records
from orchestrator.errors import FlowError, Problem, ValidationError
from orchestrator.flow import Flow, JavaScriptStep, PythonStep
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
    npm_registry: str | None = None  # for JavaScript steps (MILLRACE_NPM_REGISTRY)

    def args(self) -> list[str]:
        out = ["--index-url", self.url] if self.url else []
        for extra in self.extra:
            out += ["--extra-index-url", extra]
        return out


def lock_for(engine: Engine, requirements: list[str], index: Index) -> str:
    """The lock of ``requirements``: the one kept before, else resolved now and kept."""
    return _kept_lock(engine, requirements, lambda: resolve(requirements, index))


def _kept_lock(engine: Engine, requirements: list[str], resolve_now: Any) -> str:
    """The lock kept for ``requirements``, or ``resolve_now()``'s, kept (the first writer wins)."""
    key = requirements_key(requirements)
    table = records.dependency_locks
    with engine.connect() as conn:
        found = conn.execute(select(table.c.lock).where(table.c.key == key)).scalar()
    if found is not None:
        return found
    lock = resolve_now()
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
        if _last_used(folder) >= cutoff:
            continue
        with open(folder.with_suffix(".lock"), "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            if folder.exists() and _last_used(folder) < cutoff:  # not rebuilt while we waited
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
    return removed


def _last_used(folder: Path) -> float:
    marker = folder / COMPLETE
    return marker.stat().st_mtime if marker.exists() else folder.stat().st_mtime


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


def lock_js(engine: Engine, code: str, registry: str | None, path: str) -> None:
    """Resolve and keep the npm lock of a JavaScript step's imports now; a ValidationError at
    ``path`` carries npm's message if they do not resolve."""
    packages = npm_requirements_of(code)
    if packages:
        try:
            npm_lock_for(engine, packages, registry)
        except DependencyError as exc:
            raise ValidationError([Problem(path, f"npm packages do not resolve: {exc}")]) from None


def lock_flow(engine: Engine, flow: Flow, index: Index) -> None:
    """Lock the packages of every Python and JavaScript step of ``flow`` (see :func:`lock_code`)."""
    problems = []
    for step, path in walk_steps(flow):
        try:
            if isinstance(step, PythonStep):
                lock_code(engine, step.python, index, f"{path}.python")
            elif isinstance(step, JavaScriptStep):
                lock_js(engine, step.javascript, index.npm_registry, f"{path}.javascript")
        except ValidationError as exc:
            problems += exc.problems
    if problems:
        raise ValidationError(problems)


def index_of(settings: Any) -> Index:
    """The package index the settings name (MILLRACE_PIP_INDEX_URL, MILLRACE_PIP_EXTRA_INDEX_URLS)."""
    return Index(settings.pip_index_url or None, tuple(settings.pip_extra_index_urls),
                 settings.npm_registry or None)


def dependencies_of(engine: Engine, code: str) -> dict[str, Any]:
    """A Python script's requirements and the lock kept for them (empty if none yet)."""
    requirements = requirements_of(code)
    if not requirements:
        return describe([], None)
    with engine.connect() as conn:
        lock = conn.execute(select(records.dependency_locks.c.lock).where(
            records.dependency_locks.c.key == requirements_key(requirements))).scalar()
    return describe(requirements, lock)


# --- JavaScript: npm packages, the same way --------------------------------------------------

_JS_IMPORT = re.compile(
    r"""(?:\bimport\s+(?:[\w*${}\s,]+\s+from\s+)?|\bimport\s*\(\s*|\brequire\s*\(\s*)["']([^"'./][^"']*)["']""")
_NODE_BUILTINS: frozenset[str] | None = None


def npm_requirements_of(code: str) -> list[str]:
    """The npm packages ``code`` imports (bare specifiers; Node's built-ins excluded)."""
    packages = set()
    for spec in _JS_IMPORT.findall(code):
        if spec.startswith("node:"):
            continue
        parts = spec.split("/")
        name = "/".join(parts[:2]) if spec.startswith("@") else parts[0]
        if name not in _node_builtins():
            packages.add(name)
    return sorted(packages)


def _node_builtins() -> frozenset[str]:
    global _NODE_BUILTINS
    if _NODE_BUILTINS is None:
        node = shutil.which("node")
        listed = subprocess.run([node, "-p", "require('module').builtinModules.join(' ')"], capture_output=True,
                                text=True, timeout=30).stdout.split() if node else []
        _NODE_BUILTINS = frozenset(listed)
    return _NODE_BUILTINS


def npm_lock_for(engine: Engine, packages: list[str], registry: str | None = None) -> str:
    """The package-lock.json for ``packages`` (latest versions when first asked), kept like
    Python locks: the same packages install the same versions later."""
    def resolve_now() -> str:
        with tempfile.TemporaryDirectory(prefix="millrace-npm-") as folder:
            Path(folder, "package.json").write_text(_package_json(packages))
            _npm(["install", "--package-lock-only", *(["--registry", registry] if registry else [])], folder)
            return Path(folder, "package-lock.json").read_text()

    return _kept_lock(engine, [f"npm:{name}" for name in packages], resolve_now)


def node_modules(home: Path, packages: list[str], lock: str) -> Path:
    """The node_modules folder installed from ``lock``, built once per machine like a
    Python environment."""
    folder = home / "npm" / environment_name(lock)
    modules = folder / "node_modules"
    if (folder / COMPLETE).exists() and modules.exists():
        (folder / COMPLETE).touch()
        return modules
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_suffix(".lock"), "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if (folder / COMPLETE).exists() and modules.exists():
            return modules
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / "package.json").write_text(_package_json(packages))
        (folder / "package-lock.json").write_text(lock)
        _npm(["ci"], str(folder))
        (folder / COMPLETE).write_text(json.dumps({"built_at": time.time()}))
        with open(folder.parent / "builds.log", "a") as log:
            log.write(f"{folder.name} {time.time():.3f} {os.getpid()}\n")
    return modules


def _package_json(packages: list[str]) -> str:
    return json.dumps({"name": "millrace-step", "private": True, "type": "module",
                       "dependencies": {name: "*" for name in packages}})


def _npm(args: list[str], cwd: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DependencyError("npm is not installed on this worker")
    done = subprocess.run([npm, *args, "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        lines = [line.removeprefix("npm error ").strip() for line in done.stderr.splitlines()]
        message = "; ".join(line for line in lines if line and not line.startswith(("A complete log", "/")))
        raise DependencyError(message or f"npm {args[0]} failed with code {done.returncode}")
