"""JavaScript steps: the machine's Node.js runs the code as an ES module, in a process
(and process group) of its own. ``with`` values are matched to ``main``'s parameters by
name; the awaited return value, as JSON, is the result (reported in a file of its own, so
that anything the code prints is only logs)."""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from orchestrator.definitions.script_inputs import infer_schema
from orchestrator.errors import ValidationError
from orchestrator.executors.base import Execution, StepCall
from orchestrator.executors.process import base_env, cap_text, collect, last_line

_RUNNER = r"""
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const [codePath, argsPath, reportPath] = process.argv.slice(2);
const report = (outcome) => writeFileSync(reportPath, JSON.stringify(outcome));
let main;
try {
  main = (await import(pathToFileURL(codePath).href)).__millrace_main;
} catch (error) {
  report({ ok: false, error: `${error.name}: ${error.message}` });
  process.exit(0);
}
if (typeof main !== 'function') {
  report({ ok: false, error: 'the code defines no function `main`' });
  process.exit(0);
}
const args = JSON.parse(readFileSync(argsPath, 'utf8'));
try {
  const value = await main(...args);
  const text = JSON.stringify(value === undefined ? null : value);
  report({ ok: true, result: JSON.parse(text) });
} catch (error) {
  report({ ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
}
"""


class JavaScriptExecutor:
    def __init__(self, node: str | None = None, log_limit: int = 65536):
        self.node = node or shutil.which("node")
        self.log_limit = log_limit

    def run(self, call: StepCall) -> Execution:
        """Run ``main``; ``call.node_modules``, when given, is where its npm imports resolve."""
        code, args, timeout, node_modules = call.code, call.args, call.timeout, call.node_modules
        started = time.perf_counter()
        if self.node is None:
            return Execution(False, None, "Node.js is not installed on this worker (no `node` on PATH)", "", 0.0)
        try:
            names, required = _parameters(code)
        except ValidationError as exc:
            return Execution(False, None, str(exc), "", 0.0)
        unknown = [name for name in args if name not in names]
        missing = [name for name in required if name not in args]
        if unknown or missing:
            error = (f"main() takes no argument '{unknown[0]}'" if unknown
                     else f"main() is missing the argument '{missing[0]}'")
            return Execution(False, None, error, "", 0.0)
        folder = Path(tempfile.mkdtemp(prefix="millrace-js-"))
        try:
            (folder / "runner.mjs").write_text(_RUNNER)
            if node_modules is not None:
                (folder / "node_modules").symlink_to(node_modules, target_is_directory=True)
            (folder / "step.mjs").write_text(code + "\nexport { main as __millrace_main };\n")
            # positional, in main's order; an argument not given stays undefined (its default applies)
            values = [args.get(name) for name in names]
            last = max((i for i, name in enumerate(names) if name in args), default=-1)
            (folder / "args.json").write_text(json.dumps(values[:last + 1]))
            report = folder / "outcome.json"
            proc = subprocess.Popen(
                [self.node, str(folder / "runner.mjs"), str(folder / "step.mjs"), str(folder / "args.json"),
                 str(report)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=folder,
                env={**base_env(dict(os.environ)), **call.env}, start_new_session=True)
            _, logs, timed_out = collect(proc, timeout)
            exit_code = proc.wait()
            reported = report.read_bytes() if report.exists() else b""
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        duration = time.perf_counter() - started
        text = cap_text(logs.decode("utf-8", "replace"), self.log_limit)
        if timed_out:
            return Execution(False, None, f"timed out after {timeout:g}s", text, duration, timed_out=True)
        if not reported:
            last = last_line(logs)
            return Execution(False, None, f"node exited with code {exit_code}" + (f": {last}" if last else ""),
                             text, duration)
        outcome = json.loads(reported)
        return Execution(outcome["ok"], outcome.get("result"), outcome.get("error"), text, duration)


@functools.lru_cache(maxsize=512)
def _parameters(code: str) -> tuple[list[str], frozenset[str]]:
    """``main``'s parameter names in order and the required ones, read once per code."""
    schema = infer_schema("javascript", code)
    return list(schema["properties"]), frozenset(schema["required"])
