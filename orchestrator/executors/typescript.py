"""TypeScript turned into the JavaScript a JavaScript step runs: esbuild, an npm package
installed like any step's (``environments.node_modules``), strips the types (it does not
check them) and writes an inline source map, so Node reports TypeScript lines.

This runs when a flow or script is saved, never on the hot path: a step's TypeScript is
kept with its JavaScript (``store/transpiled.py``) and runs as a JavaScript step.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.definitions.script_inputs import keep_optional
from orchestrator.errors import DependencyError, Problem, ValidationError

TRANSPILER = "esbuild"  # the npm package; its lock is kept like a step's

# Reads the TypeScript on stdin, answers one JSON object on stdout.
_TRANSPILE = r"""
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
const esbuild = createRequire(process.argv[1] + '/')('esbuild');
const source = readFileSync(0, 'utf8');
try {
  const out = esbuild.transformSync(source, { loader: 'ts', format: 'esm', target: 'node20', sourcemap: 'inline',
                                             sourcefile: 'step.ts', logLevel: 'silent' });
  process.stdout.write(JSON.stringify({ ok: true, javascript: out.code, version: esbuild.version }));
} catch (error) {
  const errors = (error.errors || [{ text: String(error) }]).map((e) => ({
    text: e.text, line: e.location ? e.location.line : null, column: e.location ? e.location.column + 1 : null }));
  process.stdout.write(JSON.stringify({ ok: false, errors }));
}
"""


@dataclass(frozen=True)
class Transpiled:
    """A TypeScript source's JavaScript (with its inline source map) and what made it."""

    javascript: str
    transpiler: str  # e.g. "esbuild 0.28.2"


def transpile(modules: Path, code: str, node: str | None = None) -> Transpiled:
    """The JavaScript of TypeScript ``code``, by the esbuild installed in ``modules``.

    Raises ValidationError at ``code (line L, column C)`` for each syntax error (a type
    error is none: types are stripped, not checked), DependencyError if Node cannot run it.
    """
    node = node or shutil.which("node")
    if node is None:
        raise DependencyError("Node.js is not installed here (no `node` on PATH)")
    done = subprocess.run([node, "--input-type=module", "-e", _TRANSPILE, str(modules)], input=code,
                          capture_output=True, text=True, timeout=120)
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or [f"node exited with code {done.returncode}"])[-1]
        raise DependencyError(f"the TypeScript transpiler failed: {last}") from None
    if not answer["ok"]:
        raise ValidationError([Problem(_place(error), f"TypeScript syntax error: {error['text']}")
                               for error in answer["errors"]])
    return Transpiled(keep_optional(answer["javascript"], code), f"{TRANSPILER} {answer['version']}")


def _place(error: dict) -> str:
    if error["line"] is None:
        return "code"
    return f"code (line {error['line']}, column {error['column']})"
