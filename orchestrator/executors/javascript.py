"""JavaScript steps: the machine's Node.js runs the code as an ES module, in a process
(and process group) of its own. ``with`` values are matched to ``main``'s parameters by
name; the awaited return value, as JSON, is the result (reported on a descriptor of its own,
fd 3, so that anything the code prints is only logs). It is exec'd by a step server's child
in the step's own directory. When ``main`` throws, the stack's frames in the step's code go
to the logs, as Python's traceback does; Node reads source maps, so a TypeScript step's
frames name TypeScript lines (``step.ts:5:9``)."""
from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

from orchestrator.definitions.script_inputs import infer_schema
from orchestrator.errors import ValidationError
from orchestrator.executors.base import Execution, Limits, StepCall
from orchestrator.executors.process import base_env, last_line
from orchestrator.executors.sandbox import Sandbox
from orchestrator.executors.server import Servers, death, explain

MODULES_MOUNT = "/run/millrace/node_modules"  # a step's npm packages, inside the sandbox

_RUNNER = r"""
import { readFileSync, writeSync, closeSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const [codePath, argsPath] = process.argv.slice(2);
const report = (outcome) => { writeSync(3, JSON.stringify(outcome)); closeSync(3); };
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
// positional, in main's order; one not given is undefined, so its default applies (null would not)
const { names, given } = JSON.parse(readFileSync(argsPath, 'utf8'));
const args = names.map((name) => (Object.hasOwn(given, name) ? given[name] : undefined));
// the frames in the step's own code, named by file (step.mjs, or step.ts through its source map)
const ownFrames = (stack) => stack.split('\n').slice(1).filter((line) => /step\.(mjs|ts):\d+/.test(line))
  .map((line) => line.replace(/(?:file:\/\/)?\/[^\s()]*\/(step\.(?:mjs|ts))/, '$1'));
try {
  const value = await main(...args);
  const text = JSON.stringify(value === undefined ? null : value);
  report({ ok: true, result: JSON.parse(text) });
} catch (error) {
  if (error instanceof Error && typeof error.stack === 'string') {
    process.stderr.write([`${error.name}: ${error.message}`, ...ownFrames(error.stack)].join('\n') + '\n');
  }
  report({ ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
}
"""


class JavaScriptExecutor:
    def __init__(self, node: str | None = None, limits: Limits = Limits(), sandbox: Sandbox | None = None):
        self.node = node or shutil.which("node")
        self.limits = limits
        self.sandbox = sandbox
        self.servers: dict[Path | None, Servers] = {}  # by node_modules: each sandbox sees its own only

    def run(self, call: StepCall) -> Execution:
        """Run ``main``; ``call.node_modules``, when given, is where its npm imports resolve."""
        code, args = call.code, call.args
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
        last = max((i for i, name in enumerate(names) if name in args), default=-1)
        limits = call.limits or self.limits
        servers = self.servers.get(call.node_modules)
        if servers is None:
            mounts = () if call.node_modules is None else ((call.node_modules, MODULES_MOUNT),)
            servers = self.servers[call.node_modules] = Servers(sandbox=self.sandbox, mounts=mounts)
        modules = None if call.node_modules is None else (
            MODULES_MOUNT if self.sandbox is not None else str(call.node_modules))
        request = {"mode": "exec", "argv": [self.node, "--enable-source-maps", "runner.mjs", "step.mjs", "args.json"],
                   "env": {**base_env(dict(os.environ)), **call.env},
                   "files": {"runner.mjs": _RUNNER, "step.mjs": code + "\nexport { main as __millrace_main };\n",
                             "args.json": json.dumps({"names": names[:last + 1], "given": args})},
                   "links": {"node_modules": modules} if modules else {}}
        found = servers.get(call.network, limits.disk_mb).exchange(
            request, python=False, limits=limits, timeout=call.timeout, report=True, on_output=call.on_output)
        if found.report and not found.too_large and not found.timed_out:
            outcome = json.loads(found.report)
            return Execution(outcome["ok"], outcome.get("result"), outcome.get("error"), found.logs,
                             found.duration_s)
        ended = found.ending or {}
        error = None
        if ended:
            last_err = last_line(found.logs.encode())
            error = f"node exited with code {ended['code']}" if "code" in ended else death(ended)
            error += f": {last_err}" if last_err else ""
        return Execution(False, None, explain(found, limits, error, call.timeout), found.logs, found.duration_s,
                         timed_out=found.timed_out)

    def close(self) -> None:
        for servers in self.servers.values():
            servers.close()


@functools.lru_cache(maxsize=512)
def _parameters(code: str) -> tuple[list[str], frozenset[str]]:
    """``main``'s parameter names in order and the required ones, read once per code."""
    schema = infer_schema("javascript", code)
    return list(schema["properties"]), frozenset(schema["required"])
