"""What a step's code needs installed, read from the code alone (pure).

* A Python step's **requirements** come from its code: a PEP 723 block (``# /// script``
  with ``dependencies = [...]``) when there is one, else the top-level imports that are
  neither the standard library nor Millrace's own packages, mapped to distribution names
  (``yaml`` -> ``PyYAML``; the map is ``import_names.json``, data to extend).
* A JavaScript step's **npm packages** are the bare specifiers it imports, Node's built-in
  modules excluded.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

from orchestrator.errors import DependencyError

OWN_PACKAGES = frozenset({"orchestrator", "tasks", "api", "config", "__future__"})
_IMPORT_NAMES: dict[str, str] = json.loads((Path(__file__).with_name("import_names.json")).read_text())
_PEP723 = re.compile(r"(?m)^# /// script\s*$\n((?:^#(?: .*)?$\n)+?)^# ///\s*$")
# Node's built-in modules (`require('module').builtinModules` of Node 20, top-level names).
NODE_BUILTINS = frozenset(
    "assert async_hooks buffer child_process cluster console constants crypto dgram diagnostics_channel dns "
    "domain events fs http http2 https inspector module net os path perf_hooks process punycode querystring "
    "readline repl stream string_decoder sys timers tls trace_events tty url util v8 vm wasi worker_threads "
    "zlib".split())


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


_JS_IMPORT = re.compile(
    r"""(?:\bimport\s+(?:[\w*${}\s,]+\s+from\s+)?|\bimport\s*\(\s*|\brequire\s*\(\s*)["']([^"'./][^"']*)["']""")


def npm_requirements_of(code: str) -> list[str]:
    """The npm packages ``code`` imports (bare specifiers; Node's built-ins excluded)."""
    packages = set()
    for spec in _JS_IMPORT.findall(code):
        if spec.startswith("node:"):
            continue
        parts = spec.split("/")
        name = "/".join(parts[:2]) if spec.startswith("@") else parts[0]
        if name not in NODE_BUILTINS:
            packages.add(name)
    return sorted(packages)
