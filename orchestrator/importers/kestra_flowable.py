"""Kestra's flowable tasks (those that hold tasks) as Millrace composite steps: Parallel,
Sequential, ForEach, EachSequential, EachParallel, If, Switch, LoopUntil, AllowFailure, Dag,
WorkingDirectory."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from orchestrator.definitions.steps import EXECUTABLE_KINDS, step_kind
from orchestrator.importers import kestra_pebble as pebble
from orchestrator.importers.kestra_pebble import Untranslatable
from orchestrator.importers.report import Verdict


def code_steps(steps: list[dict]) -> list[dict]:
    """The code steps among ``steps`` and inside them, in document order."""
    found = []
    for made in steps:
        if step_kind(made) in EXECUTABLE_KINDS:
            found.append(made)
        for branch in made.get("parallel", []) if "for_each" not in made else []:
            found += code_steps(branch["steps"])
        for case in made.get("switch", []):
            found += code_steps(case["do"])
        found += code_steps(made.get("do", []) + made.get("else", []) + made.get("loop", {}).get("do", []))
    return found


def _inner(condition: object) -> str:
    text = str(condition).strip()
    return text[3:-2].strip() if text.startswith("${{") and text.endswith("}}") else repr(condition)


if TYPE_CHECKING:
    from orchestrator.importers.kestra_tasks import Tasks

_PARSE_VALUES = ("import json\n\n\ndef main(values) -> list:\n"
                 "    return json.loads(values) if isinstance(values, str) else list(values)\n")
_KEEP = "def main(value):\n    return value\n"
MAX_LOOP_DELAY_S = 600


class Flowable:
    def __init__(self, tasks: Tasks):
        self.tasks = tasks

    def translate(self, kind: str, task: dict, path: str, sid: str,
                  scope: dict[str, str]) -> tuple[list[dict], dict[str, str]] | None:
        handler = {"flow.Parallel": self.parallel, "flow.Sequential": self.sequential,
                   "flow.WorkingDirectory": self.sequential, "flow.ForEach": self.for_each,
                   "flow.EachSequential": self.for_each, "flow.EachParallel": self.for_each,
                   "flow.If": self.if_, "flow.Switch": self.switch, "flow.LoopUntil": self.loop_until,
                   "flow.WaitFor": self.loop_until,
                   "flow.AllowFailure": self.allow_failure, "flow.Dag": self.dag}.get(kind)
        if handler is None:
            return None
        if handler == self.for_each:
            return handler(kind, task, path, sid, scope)
        self.tasks.names.frames.append((False, lambda: "item"))
        try:
            return handler(kind, task, path, sid, scope)
        finally:
            self.tasks.names.frames.pop()

    def local_errors(self, steps: list[dict], exports: dict[str, str], task: dict, path: str, sid: str,
                     scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        """A code task's own ``errors``: the step goes on when it fails, then a switch runs the
        error tasks and fails the run, as Kestra's execution fails."""
        if len(steps) != 1 or step_kind(steps[0]) not in EXECUTABLE_KINDS:
            self.tasks.note(Verdict.UNTRANSLATABLE, f"{path}.errors", "the errors of a flowable task are not "
                                                                      "imported (use the flow's errors)")
            return steps, exports
        steps[0]["continue_on_error"] = True
        handlers, _ = self.tasks.sequence(task["errors"], f"{path}.errors", {**scope, **exports})
        failed = self.tasks.step_id(f"{sid}_failed", f"{path}.errors")
        handlers.append({"id": failed, "python": "def main(message: str):\n    raise RuntimeError(message)\n",
                         "with": {"message": f"task {task.get('id')} failed; its errors tasks ran"}})
        on_error = self.tasks.step_id(f"{sid}_errors", f"{path}.errors")
        self.tasks.note(Verdict.APPROXIMATED, f"{path}.errors", f"the task's errors -> a switch '{on_error}' after it "
                                                                "that runs them when it failed, then fails the run")
        return [*steps, {"id": on_error, "switch": [{"if": f"${{{{ steps.{sid}.status == 'failed' }}}}",
                                                     "do": handlers}]}], exports

    def parallel(self, kind: str, task: dict, path: str, sid: str,
                 scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        children = task.get("tasks") or []
        if task.get("concurrent"):
            self.tasks.note(Verdict.APPROXIMATED, f"{path}.concurrent", "concurrent: every branch starts at once")
        branches, exports = self.branches(children, f"{path}.tasks", sid, scope)
        self.tasks.note(Verdict.TRANSLATED, path, f"Parallel -> a parallel step '{sid}', a branch per task")
        return [{"id": sid, "parallel": branches}], {task.get("id"): f"steps.{sid}.result", **exports}

    def branches(self, children: list, path: str, sid: str,
                 scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        """A branch per task (a Sequential's tasks one branch): each task's result read from
        outside as the parallel's result for its branch."""
        branches, exports, used = [], {}, set()
        for i, child in enumerate(children):
            if isinstance(child, dict) and str(child.get("type", "")).endswith((".Sequential", ".WorkingDirectory")):
                steps, inner = self.tasks.sequence(child.get("tasks") or [], f"{path}[{i}].tasks", scope)
            else:
                steps, inner = self.tasks.task(child, f"{path}[{i}]", scope)
            if not steps:
                continue
            branch = steps[-1]["id"] if len(steps) == 1 else f"branch_{i}"
            while branch in used:
                branch += "_"
            used.add(branch)
            branches.append({"id": branch, "steps": steps})
            last = next((k for k, v in inner.items() if v == f"steps.{steps[-1]['id']}.result"), None)
            if last is not None:
                exports[last] = f"steps.{sid}.result.{branch}"
        if not branches:
            raise Untranslatable("it holds no tasks")
        return branches, exports

    def sequential(self, kind: str, task: dict, path: str, sid: str,
                   scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        self.tasks.taken.discard(sid)
        steps, exports = self.tasks.sequence(task.get("tasks") or [], f"{path}.tasks", scope)
        if not steps:
            raise Untranslatable("it holds no tasks")
        if kind == "flow.WorkingDirectory":
            self.tasks.note(Verdict.APPROXIMATED, path, "WorkingDirectory -> its tasks in order (no shared "
                                                        "directory: each step has its own)")
        else:
            self.tasks.note(Verdict.TRANSLATED, path, "Sequential -> its tasks in order, in place")
        steps[0].setdefault("summary", f"from Kestra {kind.split('.')[-1]} '{task.get('id')}'")
        # The options of the Sequential (runIf, disabled) then apply to its first step only: refuse that.
        if any(k in task for k in ("runIf", "disabled", "allowFailure", "retry", "timeout")):
            steps, exports = self.wrap(steps, exports, task, sid)
        return steps, exports

    def wrap(self, steps: list[dict], exports: dict[str, str], task: dict,
             sid: str) -> tuple[list[dict], dict[str, str]]:
        """Steps as one single-branch parallel step, so options apply to all of them."""
        self.tasks.taken.add(sid)
        last = steps[-1]["id"]
        outer = {k: (f"steps.{sid}.result.tasks" if v == f"steps.{last}.result" else v) for k, v in exports.items()}
        return [{"id": sid, "parallel": [{"id": "tasks", "steps": steps}]}], {task.get("id"): f"steps.{sid}.result",
                                                                                **outer}

    def allow_failure(self, kind: str, task: dict, path: str, sid: str,
                      scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        """AllowFailure: every step inside goes on when it fails, and each of its tasks runs only
        while none of the code steps before it failed (Kestra stops there)."""
        steps, exports = self.tasks.sequence(task.get("tasks") or [], f"{path}.tasks", scope)
        if not steps:
            raise Untranslatable("it holds no tasks")
        before: list[str] = []
        for made in steps:
            if before:
                guard = " and ".join(f"steps.{b}.status != 'failed'" for b in before)
                made["if"] = f"${{{{ {guard} }}}}" if "if" not in made else \
                    f"${{{{ ({guard}) and ({_inner(made['if'])}) }}}}"
            for leaf in code_steps([made]):
                leaf["continue_on_error"] = True
            if step_kind(made) in EXECUTABLE_KINDS:
                before.append(made["id"])
        self.tasks.note(Verdict.APPROXIMATED, path, "AllowFailure -> its tasks with continue_on_error, each after "
                                                    "the first failed code step skipped (Kestra's WARNING state "
                                                    "has no counterpart)")
        return steps, exports

    def for_each(self, kind: str, task: dict, path: str, sid: str,
                 scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        names = self.tasks.names_here(scope)
        raw = task.get("values", task.get("value"))
        before: list[dict] = []
        if isinstance(raw, str) and not pebble.has_template(raw):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise Untranslatable(f"values '{raw[:60]}' is not a JSON list") from None
        if isinstance(raw, list):
            values: Any = [pebble.value(v, names) for v in raw]
        elif isinstance(raw, str):
            values_id = self.tasks.step_id(f"{sid}_values", path)
            before.append({"id": values_id, "summary": "the ForEach's values, read as Kestra reads them (JSON)",
                           "python": _PARSE_VALUES, "with": {"values": pebble.text(raw, names)}})
            values = f"${{{{ steps.{values_id}.result }}}}"
        else:
            raise Untranslatable("values is neither a list nor a template")
        if kind == "flow.ForEach":
            limit = task.get("concurrencyLimit", 1)
        elif kind == "flow.EachParallel":
            limit = task.get("concurrent", 0)
        else:
            limit = 1
        parallel: bool | int = True if not limit else (False if limit == 1 else int(limit))
        captured: list[str] = []

        def outer_item() -> str:
            if not captured:
                captured.append(self.tasks.step_id(f"{sid}_value", path))
            return f"steps.{captured[0]}.result"

        self.tasks.names.frames.append((True, outer_item))
        try:
            body, _ = self.tasks.sequence(task.get("tasks") or [], f"{path}.tasks", scope)
        finally:
            self.tasks.names.frames.pop()
        if not body:
            raise Untranslatable("it holds no tasks")
        if captured:
            body.insert(0, {"id": captured[0], "summary": "this item, for the loops inside to read",
                            "python": _KEEP, "with": {"value": "${{ item }}"}})
        self.tasks.note(Verdict.TRANSLATED, path, f"{kind.split('.')[-1]} -> a for_each step '{sid}'")
        return [*before, {"id": sid, "for_each": values, "parallel": parallel, "do": body}], \
            {task.get("id"): f"steps.{sid}.result"}

    def if_(self, kind: str, task: dict, path: str, sid: str,
            scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        names = self.tasks.names_here(scope)
        cond = pebble.condition(task.get("condition", ""), names)
        then, then_out = self.tasks.sequence(task.get("then") or [], f"{path}.then", scope)
        otherwise, else_out = self.tasks.sequence(task.get("else") or [], f"{path}.else", scope)
        if not then:
            raise Untranslatable("an If with no `then` tasks")
        step: dict[str, Any] = {"id": sid, "switch": [{"if": cond, "do": then}]}
        if otherwise:
            step["else"] = otherwise
        self.tasks.note(Verdict.TRANSLATED, path, f"If -> a switch step '{sid}' with one case and else")
        return [step], {task.get("id"): f"steps.{sid}.result", **self.lasts(sid, (then, then_out),
                                                                             (otherwise, else_out))}

    def lasts(self, sid: str, *cases: tuple[list[dict], dict[str, str]]) -> dict[str, str]:
        """The last task of each case, read from outside as the switch's result."""
        out = {}
        for steps, exports in cases:
            for k, v in exports.items():
                if steps and v == f"steps.{steps[-1]['id']}.result":
                    out[k] = f"steps.{sid}.result"
        return out

    def switch(self, kind: str, task: dict, path: str, sid: str,
               scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        names = self.tasks.names_here(scope)
        subject = pebble.as_expression(task.get("value", ""), names)
        cases, made = [], []
        for key, tasks in (task.get("cases") or {}).items():
            steps, exports = self.tasks.sequence(tasks, f"{path}.cases.{key}", scope)
            if steps:
                cases.append({"if": f"${{{{ (({subject}) | string) == {str(key)!r} }}}}", "do": steps})
                made.append((steps, exports))
        defaults, exports = self.tasks.sequence(task.get("defaults") or [], f"{path}.defaults", scope)
        if not cases:
            raise Untranslatable("a Switch with no cases")
        step: dict[str, Any] = {"id": sid, "switch": cases}
        if defaults:
            step["else"] = defaults
            made.append((defaults, exports))
        self.tasks.note(Verdict.TRANSLATED, path, f"Switch -> a switch step '{sid}', a case per value")
        return [step], {task.get("id"): f"steps.{sid}.result", **self.lasts(sid, *made)}

    def loop_until(self, kind: str, task: dict, path: str, sid: str,
                   scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        check = task.get("checkFrequency") or {}
        inside = {**scope, task.get("id"): pebble.ITERATION}
        body, exports = self.tasks.sequence(task.get("tasks") or [], f"{path}.tasks", inside)
        until = pebble.condition(task.get("condition", ""), self.tasks.names_here({**inside, **exports}))
        if not body:
            raise Untranslatable("it holds no tasks")
        loop: dict[str, Any] = {"do": body, "until": until, "max_iterations": int(check.get("maxIterations", 100))}
        delay = check.get("interval", "PT1M")
        from orchestrator.importers.kestra_tasks import seconds

        delay_s = float(seconds(delay, f"{path}.checkFrequency.interval")[:-1])
        if delay_s > MAX_LOOP_DELAY_S:
            self.tasks.note(Verdict.APPROXIMATED, f"{path}.checkFrequency.interval", f"an interval past "
                                                  f"{MAX_LOOP_DELAY_S}s -> {MAX_LOOP_DELAY_S}s (a loop's longest)")
            delay_s = MAX_LOOP_DELAY_S
        if delay_s:
            loop["delay"] = f"{delay_s:g}s"
        if not task.get("failOnMaxReached", False):
            self.tasks.note(Verdict.APPROXIMATED, path, "reaching maxIterations fails the step (Kestra's "
                                                        "failOnMaxReached: false ends it WARNING)")
        if "maxDuration" in check:
            self.tasks.note(Verdict.APPROXIMATED, f"{path}.checkFrequency.maxDuration", "maxDuration is not kept "
                                                                                      "(max_iterations bounds it)")
        self.tasks.note(Verdict.TRANSLATED, path, f"{kind.split('.')[-1]} -> a loop step '{sid}' with until")
        return [{"id": sid, "loop": loop}], {task.get("id"): f"steps.{sid}.result", **self.lasts(sid, (body, exports))}

    def dag(self, kind: str, task: dict, path: str, sid: str,
            scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        """Dag -> its tasks in dependency order, those that may run together as a parallel step."""
        entries = task.get("tasks") or []
        graph: dict[str, list[str]] = {}
        by_id: dict[str, tuple[int, dict]] = {}
        for i, entry in enumerate(entries):
            inner = entry.get("task") if isinstance(entry, dict) else None
            if not isinstance(inner, dict) or "id" not in inner:
                raise Untranslatable(f"tasks[{i}] needs a `task` with an id")
            by_id[inner["id"]] = (i, inner)
            graph[inner["id"]] = list(entry.get("dependsOn") or [])
        levels: list[list[str]] = []
        done: set[str] = set()
        while len(done) < len(graph):
            ready = [t for t in graph if t not in done and all(d in done for d in graph[t])]
            if not ready:
                raise Untranslatable("its dependsOn has a cycle or names a task it does not hold")
            levels.append(ready)
            done.update(ready)
        steps: list[dict] = []
        seen = dict(scope)
        exports: dict[str, str] = {}
        self.tasks.taken.discard(sid)
        for n, level in enumerate(levels):
            if len(level) == 1:
                i, inner = by_id[level[0]]
                made, out = self.tasks.task(inner, f"{path}.tasks[{i}].task", seen)
            else:
                group = self.tasks.step_id(f"{sid}_{n + 1}", path)
                children = [by_id[t][1] for t in level]
                branches, out = self.branches(children, f"{path}.tasks", group, seen)
                made = [{"id": group, "parallel": branches}]
            steps += made
            seen.update(out)
            exports.update(out)
        self.tasks.note(Verdict.APPROXIMATED, path, f"Dag -> {len(levels)} groups in dependency order, each a "
                                                    "parallel step (a task waits for its whole group before)")
        if any(k in task for k in ("runIf", "disabled", "allowFailure", "errors")):
            return self.wrap(steps, exports, task, sid)
        return steps, exports
