"""Where steps' packages get installed on a worker's machine: a virtualenv per Python lock
(built by uv) and a node_modules folder per npm lock, under ``MILLRACE_HOME``.

An environment is shared by the workers of a machine, built once under a file lock
(whoever waits finds it built), marked complete only when done (a half-built one is
rebuilt), and reused across runs. Each Python environment gets its own fork server, so its
steps start as fast as others. Locks (exact versions) are resolved here too, by uv and npm.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import DependencyError

COMPLETE = ".millrace-complete"


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


def resolve_npm(packages: list[str], registry: str | None) -> str:
    """The package-lock.json npm resolves for ``packages`` (their latest versions now)."""
    with tempfile.TemporaryDirectory(prefix="millrace-npm-") as folder:
        Path(folder, "package.json").write_text(_package_json(packages))
        _npm(["install", "--package-lock-only", *(["--registry", registry] if registry else [])], folder)
        return Path(folder, "package-lock.json").read_text()
