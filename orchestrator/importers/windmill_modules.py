"""Windmill flow modules as Millrace steps (pure): one module kind, one method.

A module that cannot be translated becomes a Bash step that fails naming the module and why;
the rest of its flow is translated around it.
"""
from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.importers.naming import fold
from orchestrator.importers.report import FileReport, Verdict
from orchestrator.importers.windmill_code import Variables, translate_code
from orchestrator.importers.windmill_expressions import ExprScope, Untranslatable, to_jinja, to_value
from orchestrator.importers.windmill_options import approval_step, seconds, translate_retry, unknown_keys

# What reading a document that is not OpenFlow as documented raises: the part becomes untranslatable.
MALFORMED = (Untranslatable, TypeError, ValueError, AttributeError, KeyError)
MAX_WHILE_ITERATIONS = 1000  # MILLRACE_MAX_LOOP_ITERATIONS' default: a Windmill while loop has no bound
# Module keys each handled below; any other is reported, never dropped silently.
_MODULE_KEYS = {"id", "value", "summary", "stop_after_if", "stop_after_all_iters_if", "suspend", "sleep", "retry",
                "skip_if", "timeout", "cache_ttl", "continue_on_error", "mock", "priority", "delete_after_use"}


@dataclass(frozen=True)
class SavedScript:
    """What a flow's `script` module needs to know of a saved script this import made."""

    path: str  # its Millrace path
    key: str  # python, bash, typescript, javascript, sql
    extra: dict[str, str]  # parameters the translation added, with the values to pass


@dataclass
class Targets:
    """Names the import gave, to rewrite references: Windmill path -> Millrace id or script."""

    flows: dict[str, str]
    scripts: dict[str, SavedScript]


class ModuleTranslator:
    """Translates one flow's modules, keeping its step ids unique and its findings in ``report``."""

    def __init__(self, report: FileReport, variables: Variables, targets: Targets,
                 read_inline: Callable[[str], str]):
        self.report, self.variables, self.targets = report, variables, targets
        self.read_inline = read_inline  # `!inline name` -> the text of the file beside the flow
        self.used: set[str] = set()

    def note(self, verdict: Verdict, where: str, message: str) -> None:
        self.report.note(verdict, where, message)

    def step_id(self, original: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", str(original))[:60] or "step"
        base = "_" + base[:59] if base[0].isdigit() else base
        candidate, n = base, 2
        while candidate in self.used:
            candidate, n = f"{base}_{n}", n + 1
        self.used.add(candidate)
        return candidate

    def sequence(self, modules: Any, where: str, scope: ExprScope, loop: bool) -> list[dict[str, Any]]:
        """The steps of a list of modules; ``scope`` grows with each module's result."""
        if not isinstance(modules, list):
            raise Untranslatable(f"{where} is not a list of modules")
        steps: list[dict[str, Any]] = []
        for i, module in enumerate(modules):
            made = self.module(module, f"{where}[{i}]", scope, loop)
            steps += made
            if i == len(modules) - 1 and len(made) > 1:  # an approval or sleep last: the module's result is the
                steps.append(self.pass_on(scope.previous))  # sequence's, as in Windmill
        return steps

    def module(self, module: Any, where: str, scope: ExprScope, loop: bool) -> list[dict[str, Any]]:
        if not isinstance(module, dict) or not isinstance(module.get("value"), dict):
            self.note(Verdict.UNTRANSLATABLE, where, "not a module (a mapping with `id` and `value`)")
            return [self.failing(self.step_id(f"module_{where.count('[')}"), where, "not a module")]
        original = str(module.get("id", "step"))
        sid = self.step_id(original)
        try:
            steps = self.translate(module, sid, where, scope, loop)
        except MALFORMED as exc:
            reason = str(exc) if isinstance(exc, Untranslatable) else f"not OpenFlow as documented ({exc})"
            self.note(Verdict.UNTRANSLATABLE, where, reason)
            steps = [self.failing(sid, where, reason, module.get("summary"))]
        scope.results[original] = self.result_of(module, sid)
        scope.previous = scope.results[original]
        return steps

    def result_of(self, module: dict[str, Any], sid: str) -> str:
        """Jinja for what Windmill calls `results.<id>` of this module."""
        value = module["value"]
        kind = value.get("type")
        if kind == "branchall":
            branches = value.get("branches") if isinstance(value.get("branches"), list) else []
            return "[" + ", ".join(f"steps.{sid}.result.branch_{i}" for i in range(len(branches))) + "]"
        if kind == "rawscript" and value.get("language") == "postgresql":
            return f"steps.{sid}.result.rows"
        if kind == "script" and str(value.get("path")) in self.targets.scripts:
            if self.targets.scripts[str(value["path"])].key == "sql":
                return f"steps.{sid}.result.rows"
        return f"steps.{sid}.result"

    def failing(self, sid: str, where: str, reason: str, summary: Any = None) -> dict[str, Any]:
        message = f"untranslatable Windmill module at {where}: {reason}"
        return {"id": sid, "summary": str(summary or message)[:200], "bash": f"echo {shlex.quote(message)} >&2\nexit 1"}

    def translate(self, module: dict[str, Any], sid: str, where: str, scope: ExprScope,
                  loop: bool) -> list[dict[str, Any]]:
        value = module["value"]
        kind = value.get("type")
        handler = {"rawscript": self.rawscript, "script": self.script, "flow": self.subflow,
                   "forloopflow": self.for_loop, "whileloopflow": self.while_loop, "branchone": self.branch_one,
                   "branchall": self.branch_all, "identity": self.identity}.get(kind)
        if handler is None:
            raise Untranslatable(f"module type '{kind}' has no Millrace counterpart")
        step: dict[str, Any] = {"id": sid}
        if module.get("summary"):
            step["summary"] = str(module["summary"])[:500]
        mocked = module.get("mock") or {}
        if isinstance(mocked, dict) and mocked.get("enabled"):
            self.note(Verdict.APPROXIMATED, f"{where}.mock", "mocked: the step returns the mock value instead of "
                                                             "running")
            literal = json.dumps(json.dumps(mocked.get("return_value")))
            step["python"] = f"import json\n\n\ndef main():\n    return json.loads({literal})\n"
        else:
            step.update(handler(value, f"{where}.value", scope, loop))
            unknown_keys(value, f"{where}.value", self.report)
        after = self.options(module, step, where, scope, loop)
        self.note(Verdict.TRANSLATED, where, f"{kind} -> step {sid}")
        return [step, *after]

    def options(self, module: dict[str, Any], step: dict[str, Any], where: str, scope: ExprScope,
                loop: bool) -> list[dict[str, Any]]:
        """The step options a module sets, and the steps that follow it (approval, sleep)."""
        for key in sorted(set(module) - _MODULE_KEYS):
            self.note(Verdict.APPROXIMATED, f"{where}.{key}", f"`{key}` is not imported")
        own = replace(scope, result=True, results=dict(scope.results), previous=scope.previous)
        skip = module.get("skip_if")
        if isinstance(skip, dict) and skip.get("expr"):
            step["if"] = "${{ not (" + to_jinja(skip["expr"], scope) + ") }}"
        stop = module.get("stop_after_if")
        if isinstance(stop, dict) and stop.get("expr"):
            condition = to_value(stop["expr"], own)
            if stop.get("error_message"):
                step["fail_if"] = condition
                self.note(Verdict.APPROXIMATED, f"{where}.stop_after_if", "stops with an error -> fail_if (the "
                                                                          "failure policy follows)")
            elif loop:
                step["break_if"] = condition
            else:
                step["stop_if"] = condition
                if stop.get("skip_if_stopped"):
                    self.note(Verdict.APPROXIMATED, f"{where}.stop_after_if",
                              "the run ends succeeded (Windmill marks it skipped)")
        stop_all = module.get("stop_after_all_iters_if")
        if isinstance(stop_all, dict) and stop_all.get("expr"):
            step["stop_if"] = to_value(stop_all["expr"], own)
        retry = module.get("retry")
        if isinstance(retry, dict):
            translated = self.retry(retry, f"{where}.retry")
            if translated:
                step["retry"] = translated
        if module.get("timeout"):
            step["timeout"] = self.seconds(module["timeout"], f"{where}.timeout")
        if module.get("cache_ttl"):
            step["cache"] = self.seconds(module["cache_ttl"], f"{where}.cache_ttl")
        if module.get("continue_on_error"):
            step["continue_on_error"] = True
        for key in ("priority", "delete_after_use"):
            if module.get(key):
                self.note(Verdict.APPROXIMATED, f"{where}.{key}", f"`{key}` has no Millrace counterpart; dropped")
        after: list[dict[str, Any]] = []
        if isinstance(module.get("suspend"), dict) and module["suspend"].get("required_events", 1):
            after.append(self.approval(module["suspend"], step["id"], f"{where}.suspend", scope))
        sleep = module.get("sleep")
        if isinstance(sleep, dict) and sleep.get("type") == "static" and sleep.get("value"):
            after.append({"id": self.step_id(f"{step['id']}_sleep"), "sleep": self.seconds(sleep["value"],
                                                                                          f"{where}.sleep")})
        elif isinstance(sleep, dict) and sleep.get("type") == "javascript":
            reason = "a sleep given by an expression (Millrace's sleep is a fixed duration)"
            self.note(Verdict.UNTRANSLATABLE, f"{where}.sleep", reason)
            after.append(self.failing(self.step_id(f"{step['id']}_sleep"), f"{where}.sleep", reason))
        return after

    def seconds(self, value: Any, where: str) -> str:
        return seconds(value, where)

    def retry(self, retry: dict[str, Any], where: str) -> dict[str, Any] | None:
        return translate_retry(retry, where, self.report)

    def approval(self, suspend: dict[str, Any], after: str, where: str, scope: ExprScope) -> dict[str, Any]:
        sid = self.step_id(f"{after}_approval")
        scope.resume = f"steps.{sid}.result"
        return {"id": sid, **approval_step(suspend, where, self.report)}

    # --- module kinds ----------------------------------------------------------------------

    def arguments(self, transforms: Any, where: str, scope: ExprScope) -> dict[str, Any]:
        """``input_transforms`` as a step's ``with``."""
        given: dict[str, Any] = {}
        for name, transform in (transforms or {}).items():
            if not isinstance(transform, dict):
                raise Untranslatable(f"{where}.{name} is not an input transform")
            if transform.get("type") == "static":
                given[name] = self.static(transform.get("value"))
            elif transform.get("type") == "javascript":
                given[name] = to_value(str(transform.get("expr", "")), scope)
            else:
                raise Untranslatable(f"{where}.{name}: input transform type '{transform.get('type')}'")
        return given

    def static(self, value: Any) -> Any:
        """A static value, with Windmill's ``$var:path`` and ``$res:path`` as variables and secrets."""
        if isinstance(value, str) and value.startswith("$var:"):
            return "${{ " + self.variables.variable(value[5:]) + " }}"
        if isinstance(value, str) and value.startswith("$res:"):
            return "${{ " + self.variables.resource(value[5:]) + " }}"
        if isinstance(value, dict):
            return {k: self.static(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.static(v) for v in value]
        return value

    def database(self, given: dict[str, Any], where: str) -> str | None:
        """A PostgreSQL step's `database` argument (a `$res:` path) as the secret's name."""
        value = given.pop("database", None)
        if value is None:
            return None
        found = re.fullmatch(r"\$\{\{ secrets\.([A-Za-z_][A-Za-z0-9_]*) \}\}", str(value))
        if found is None:
            raise Untranslatable(f"{where}.database is not a `$res:` resource path (Millrace's `database:` names a "
                                 "secret when the flow is saved)")
        return found.group(1)

    def rawscript(self, value: dict[str, Any], where: str, scope: ExprScope, loop: bool) -> dict[str, Any]:
        content = str(value.get("content") or "")
        if content.startswith("!inline "):
            content = self.read_inline(content[len("!inline "):].strip())
        code = translate_code(str(value.get("language")), content, self.variables)
        for verdict, message in code.notes:
            self.note(verdict, f"{where}.content", message)
        given = self.arguments(value.get("input_transforms"), f"{where}.input_transforms", scope)
        step = self.code_step(code.key, code.code, given, code.extra, where, code.key == "sql")
        if value.get("tag"):
            step["queue"] = str(value["tag"])
            self.note(Verdict.APPROXIMATED, f"{where}.tag", "worker tag -> queue (start a worker with -Q)")
        return step

    def code_step(self, key: str, code: str, given: dict[str, Any], extra: dict[str, str], where: str,
                  sql: bool) -> dict[str, Any]:
        """A code or script step: an SQL one's `database` taken from its arguments, and the
        parameters its code's translation added passed with the rest."""
        step: dict[str, Any] = {key: code}
        if sql:
            database = self.database(given, f"{where}.input_transforms")
            if database:
                step["database"] = database
        given.update(extra)
        if given:
            step["with"] = given
        return step

    def script(self, value: dict[str, Any], where: str, scope: ExprScope, loop: bool) -> dict[str, Any]:
        path = str(value.get("path") or "")
        saved = self.targets.scripts.get(path)
        if saved is None:
            saved = SavedScript(self.outside("script", path, where), "", {})
        given = self.arguments(value.get("input_transforms"), f"{where}.input_transforms", scope)
        if value.get("hash"):
            self.note(Verdict.APPROXIMATED, f"{where}.hash", "a pinned script version -> the latest version")
        return self.code_step("script", saved.path, given, saved.extra, where, saved.key == "sql")

    def subflow(self, value: dict[str, Any], where: str, scope: ExprScope, loop: bool) -> dict[str, Any]:
        path = str(value.get("path") or "")
        flow_id = self.targets.flows.get(path) or self.outside("flow", path, where)
        given = self.arguments(value.get("input_transforms"), f"{where}.input_transforms", scope)
        return {"flow": flow_id, **({"with": given} if given else {})}

    def outside(self, kind: str, path: str, where: str) -> str:
        """The Millrace name of a script or flow this import does not hold, by the same folding."""
        if path.startswith("hub/") or not path:
            raise Untranslatable(f"{kind} '{path}' is a Windmill Hub {kind} (or none), which Millrace does not have")
        name = fold(path)
        self.note(Verdict.APPROXIMATED, f"{where}.path", f"{kind} '{path}' is not in this import: the step calls "
                                                         f"{name}, which must be saved before this flow is")
        return name

    def body(self, modules: Any, where: str, scope: ExprScope, loop: bool, in_for: bool = False,
             fallback: str | None = None) -> list[dict[str, Any]]:
        """A nested list of modules (a loop's or a branch's): its own copy of the scope."""
        inner = replace(scope, results=dict(scope.results), previous=fallback, in_loop=scope.in_loop or in_for)
        steps = self.sequence(modules, where, inner, loop)
        scope.results.update(inner.results)
        if steps:
            return steps
        self.note(Verdict.TRANSLATED, where, "an empty branch -> a step passing the previous result on")
        return [self.pass_on(fallback or scope.previous)]

    def pass_on(self, previous: str | None) -> dict[str, Any]:
        return {"id": self.step_id("identity"), "python": "def main(value=None):\n    return value\n",
                **({"with": {"value": "${{ " + previous + " }}"}} if previous else {})}

    def for_loop(self, value: dict[str, Any], where: str, scope: ExprScope, loop: bool) -> dict[str, Any]:
        iterator = value.get("iterator") or {}
        if iterator.get("type") == "static":
            items = self.static(iterator.get("value"))
        else:
            items = to_value(str(iterator.get("expr", "")), scope)
        do = self.body(value.get("modules"), f"{where}.modules", scope, True, in_for=True)
        if value.get("skip_failures"):
            self.skip_failures(do, where)
        parallel: bool | int = bool(value.get("parallel"))
        if parallel and value.get("parallelism"):
            parallel = int(value["parallelism"])
        return {"for_each": items, "parallel": parallel, "do": do}

    def skip_failures(self, steps: list[dict[str, Any]], where: str) -> None:
        for step in steps:
            step["continue_on_error"] = True
        self.note(Verdict.APPROXIMATED, f"{where}.skip_failures", "-> continue_on_error on each step (a failed "
                                                                  "step's result is null, Windmill's its error)")

    def while_loop(self, value: dict[str, Any], where: str, scope: ExprScope, loop: bool) -> dict[str, Any]:
        do = self.body(value.get("modules"), f"{where}.modules", scope, True)
        if value.get("skip_failures"):
            self.skip_failures(do, where)
        self.note(Verdict.APPROXIMATED, where, f"a loop ended by its steps' stop_after_if (break_if), at most "
                                               f"{MAX_WHILE_ITERATIONS} iterations (Windmill's has no bound); its "
                                               "result is the last iteration's (Windmill's lists every one)")
        return {"loop": {"while": "${{ true }}", "max_iterations": MAX_WHILE_ITERATIONS, "do": do}}

    def branch_one(self, value: dict[str, Any], where: str, scope: ExprScope, loop: bool) -> dict[str, Any]:
        cases = []
        for i, branch in enumerate(value.get("branches") or []):
            condition = to_value(str(branch.get("expr", "")), scope)
            do = self.body(branch.get("modules"), f"{where}.branches[{i}].modules", scope, loop,
                           fallback=scope.previous)
            cases.append({"if": condition, "do": do})
        if not cases:
            raise Untranslatable("a branchone with no branches")
        default = self.body(value.get("default"), f"{where}.default", scope, loop, fallback=scope.previous)
        return {"switch": cases, "else": default}

    def branch_all(self, value: dict[str, Any], where: str, scope: ExprScope, loop: bool) -> dict[str, Any]:
        branches = []
        for i, branch in enumerate(value.get("branches") or []):
            steps = self.body(branch.get("modules"), f"{where}.branches[{i}].modules", scope, loop,
                              fallback=scope.previous)
            if branch.get("skip_failure"):
                self.skip_failures(steps, f"{where}.branches[{i}]")
            branches.append({"id": f"branch_{i}", "steps": steps})
        if not branches:
            raise Untranslatable("a branchall with no branches")
        if value.get("parallel") is False:
            self.note(Verdict.APPROXIMATED, f"{where}.parallel", "the branches run at once (Windmill ran them one "
                                                                 "after another)")
        self.note(Verdict.TRANSLATED, where, "the result is the list of the branches' results, as Windmill's")
        return {"parallel": branches}

    def identity(self, value: dict[str, Any], where: str, scope: ExprScope, loop: bool) -> dict[str, Any]:
        step = self.pass_on(scope.previous)
        self.used.discard(step.pop("id"))
        return step
