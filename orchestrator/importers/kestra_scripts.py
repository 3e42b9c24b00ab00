"""Kestra's script tasks (Python, Shell, Node; inline ``script:`` or ``commands:``) as Millrace
code steps. Kestra renders a script's Pebble before running it and collects what
``Kestra.outputs({...})`` is given as ``outputs.<task>.vars``; here the step's result is
``{"vars": {...}, "exitCode": 0}``, so ``outputs.t.vars.x`` reads ``steps.t.result.vars.x``."""
from __future__ import annotations

import ast
import json
import re
import shlex
import textwrap
from dataclasses import dataclass, field
from typing import Any

from orchestrator.importers import kestra_pebble as pebble
from orchestrator.importers.kestra_pebble import Names, Untranslatable

_PIP = re.compile(r"^\s*(?:python3?\s+-m\s+)?pip3?\s+install\s+(.*)$")
_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KESTRA_IMPORT = re.compile(r"^\s*from\s+kestra\s+import\s+Kestra\s*$|^\s*import\s+kestra\s*$", re.M)
_NODE_KESTRA = re.compile(r"""require\(\s*['"]@kestra-io/libs['"]\s*\)""")
_PY_SHIM = '''import sys
import types


class Kestra:
    """Kestra's script helper: what outputs() is given becomes the step's result, under vars."""

    collected: dict = {}

    @staticmethod
    def outputs(values):
        Kestra.collected.update(values)

    @staticmethod
    def counter(*args, **kwargs):
        pass

    @staticmethod
    def timer(*args, **kwargs):
        pass


sys.modules["kestra"] = types.SimpleNamespace(Kestra=Kestra)
'''
# Kestra runs the commands failing on the first that fails, and reads ::{"outputs": {...}}::
# lines of their output as the task's outputs: the last such line is the result's vars.
_SHELL = """kestra_log=$(mktemp)
(
set -e
{commands}
) | tee "$kestra_log"
kestra_status=${{PIPESTATUS[0]}}
if [ "$kestra_status" -ne 0 ]; then rm -f "$kestra_log"; exit "$kestra_status"; fi
kestra_outputs='s/^::{{[[:space:]]*"outputs"[[:space:]]*:[[:space:]]*\\(.*\\)}}::[[:space:]]*$/\\1/p'
kestra_vars=$(sed -n "$kestra_outputs" "$kestra_log" | tail -n 1)
rm -f "$kestra_log"
[ -n "$kestra_vars" ] || kestra_vars='{{}}'
echo "{{\\"vars\\": $kestra_vars, \\"exitCode\\": 0}}"
"""
_JS_SHIM = """import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const __kestra = { collected: {}, outputs(values) { Object.assign(this.collected, values); },
  counter() {}, timer() {} };
"""


@dataclass
class Code:
    """A code step's kind, code, ``with`` and what the translation notes about it."""

    kind: str
    code: str
    with_: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def pip_requirements(commands: list[str]) -> tuple[list[str], list[str]]:
    """``pip install a b==1`` lines -> (requirements, the other commands)."""
    requirements, others = [], []
    for command in commands:
        match = _PIP.match(command)
        if match is None:
            others.append(command)
            continue
        words = shlex.split(match.group(1))
        requirements += [w for w in words if not w.startswith("-")]
    return requirements, others


def python_script(code: str, env: dict[str, Any], before: list[str], names: Names) -> Code:
    requirements, others = pip_requirements(before)
    result = Code("python", "")
    if others:
        result.notes.append(f"beforeCommands other than pip installs are not run: {'; '.join(others)}")
    header = ""
    if requirements:
        header = "# /// script\n# dependencies = " + json.dumps(requirements) + "\n# ///\n"
    params, setup = _env_params(env, names, result)
    if pebble.has_template(code) or _needs_module_scope(code):
        result.with_["source"] = pebble.text(code, names)
        imports = _top_imports(code) if not requirements else ""
        result.code = (f"{header}{imports}{_PY_SHIM}\n\ndef main({', '.join(['source', *params])}) -> dict:\n"
                       f"{setup}    Kestra.collected = {{}}\n"
                       "    scope = {\"__name__\": \"__main__\", \"Kestra\": Kestra}\n"
                       "    exec(compile(source, \"script.py\", \"exec\"), scope)\n"
                       "    return {\"vars\": Kestra.collected, \"exitCode\": 0}\n")
        return result
    tree = ast.parse(code)
    lines = code.splitlines()
    hoisted: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            hoisted.update(range(node.lineno - 1, node.end_lineno))
    imports = "\n".join(lines[i] for i in sorted(hoisted) if not _KESTRA_IMPORT.match(lines[i]))
    body = "\n".join(line for i, line in enumerate(lines) if i not in hoisted).strip("\n") or "pass"
    result.code = (f"{header}{imports + chr(10) if imports else ''}{_PY_SHIM}\n\n"
                   f"def main({', '.join(params)}) -> dict:\n{setup}    Kestra.collected = {{}}\n"
                   f"{textwrap.indent(textwrap.dedent(body), '    ')}\n"
                   "    return {\"vars\": Kestra.collected, \"exitCode\": 0}\n")
    return result


def _needs_module_scope(code: str) -> bool:
    """Code that means something else inside a function: run it as a module instead."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.Global | ast.Nonlocal | ast.Return | ast.Yield | ast.YieldFrom | ast.Await):
            if node in tree.body or isinstance(node, ast.Global | ast.Nonlocal):
                return True
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            return True
        if isinstance(node, ast.Name) and node.id == "__name__":
            return True
        if isinstance(node, ast.Constant | ast.JoinedStr) and node.lineno != node.end_lineno:
            return True  # a string over several lines would change when indented
    return False


def _top_imports(code: str) -> str:
    """The top-level imports of a script run from a string, so its packages are still found."""
    try:
        tree = ast.parse(re.sub(r"\{\{.*?\}\}", "0", code, flags=re.S))
    except SyntaxError:
        return ""
    lines = code.splitlines()
    found = [lines[n.lineno - 1] for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)
             and n.lineno == n.end_lineno and not _KESTRA_IMPORT.match(lines[n.lineno - 1])]
    return "".join(f"{line.strip()}\n" for line in found)


def _env_params(env: dict[str, Any], names: Names, result: Code) -> tuple[list[str], str]:
    params, setup = [], ""
    for key, raw in env.items():
        if not _ARG.match(key):
            raise Untranslatable(f"the environment variable name '{key}' cannot be an argument")
        params.append(key)
        result.with_[key] = pebble.value(raw, names)
    if params:
        setup = "    import os\n    os.environ.update({" + ", ".join(f"{p!r}: str({p})" for p in params) + "})\n"
    return params, setup


def shell(commands: list[str], env: dict[str, Any], before: list[str], names: Names) -> Code:
    """Shell commands; each ``{{ }}`` becomes an environment variable the step is given,
    quoted so the shell reads it as Kestra's rendered text."""
    result = Code("bash", "")
    for key, raw in env.items():
        if not _ARG.match(key):
            raise Untranslatable(f"the environment variable name '{key}' cannot be given to a bash step")
        result.with_[key] = pebble.value(raw, names)
    script = _substitute("\n".join([*before, *commands]), names, result.with_)
    result.code = _SHELL.format(commands=script)
    return result


def _substitute(script: str, names: Names, with_: dict[str, Any]) -> str:
    out, pos, quote, n = [], 0, None, 0
    for match in re.finditer(r"\{\{-?.*?-?\}\}|\{%.*?%\}|['\"\\]", script, re.S):
        token = match.group(0)
        out.append(script[pos:match.start()])
        pos = match.end()
        if token == "\\" and quote != "'":
            out.append(token + script[pos:pos + 1])
            pos += 1
        elif token in "'\"":
            quote = None if quote == token else (quote or token)
            out.append(token)
        else:
            n += 1
            name = f"KESTRA_VALUE_{n}"
            with_[name] = pebble.text(token, names)
            out.append({"'": f"'\"${{{name}}}\"'", '"': f"${{{name}}}"}.get(quote or "", f"\"${{{name}}}\""))
    out.append(script[pos:])
    return "".join(out)


def node_script(code: str, env: dict[str, Any], names: Names) -> Code:
    result = Code("javascript", "")
    params = []
    for key, raw in env.items():
        if not _ARG.match(key):
            raise Untranslatable(f"the environment variable name '{key}' cannot be an argument")
        params.append(key)
        result.with_[key] = pebble.value(raw, names)
    setup = "".join(f"  process.env.{p} = String({p});\n" for p in params)
    code = _NODE_KESTRA.sub("__kestra", code)
    imports = [line for line in code.splitlines() if re.match(r"^\s*import\s", line)]
    body = "\n".join(line for line in code.splitlines() if line not in imports)
    if pebble.has_template(body):
        result.with_["source"] = pebble.text(body, names)
        params.insert(0, "source")
        body = ("const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;\n"
                "await new AsyncFunction(\"require\", \"Kestra\", source)(require, __kestra);")
    result.code = ("\n".join(imports) + ("\n" if imports else "") + _JS_SHIM +
                   f"\nexport async function main({', '.join(params)}) {{\n{setup}  __kestra.collected = {{}};\n"
                   f"{textwrap.indent(body, '  ')}\n  return {{ vars: __kestra.collected, exitCode: 0 }};\n}}\n")
    return result
