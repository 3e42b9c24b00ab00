"""Kestra tasks as Millrace steps: the task options every task takes (``disabled``, ``runIf``,
``allowFailure``, ``retry``, ``timeout``), the leaf tasks of Kestra's core and its script
tasks. The flowable tasks (Parallel, ForEach, If, ...) are ``kestra_flowable.py``.

A task's result is what Kestra calls its outputs, so ``outputs.t.value`` reads
``steps.t.result.value`` wherever ``t`` has run by then."""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from orchestrator.definitions.steps import EXECUTABLE_KINDS
from orchestrator.importers import kestra_pebble as pebble
from orchestrator.importers import kestra_scripts as scripts
from orchestrator.importers.kestra_pebble import Names, Untranslatable
from orchestrator.importers.naming import IdAllocator
from orchestrator.importers.report import FileReport, Verdict

_ISO = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_LOG = ("import sys\n\n\ndef main(message, level: str = \"INFO\"):\n{started}"
        "    out = sys.stderr if level in (\"WARN\", \"ERROR\") else sys.stdout\n"
        "    for line in message if isinstance(message, list) else [message]:\n"
        "        print(line, file=out)\n")
_RETURN = "def main(value):\n{started}    return {{\"value\": value}}\n"
_VALUES = "def main(values: dict) -> dict:\n{started}    return {{\"values\": values}}\n"
_FAIL = "def main(message: str):\n{started}    raise RuntimeError(message)\n"
_NOTHING = "def main():\n    return None\n"
_STARTED = (f"import datetime\n\nSTARTED = {pebble.STARTED!r}\n\n\ndef started(value):\n"
            "    \"\"\"Kestra's taskrun.startDate: the time this step started.\"\"\"\n"
            "    now = datetime.datetime.now(datetime.timezone.utc).isoformat()\n"
            "    if isinstance(value, str):\n        return value.replace(STARTED, now)\n"
            "    if isinstance(value, list):\n        return [started(v) for v in value]\n"
            "    if isinstance(value, dict):\n        return {{k: started(v) for k, v in value.items()}}\n"
            "    return value\n\n\n")


def ident(name: Any, fallback: str = "task") -> str:
    """A Kestra id as a Millrace step id or input name: letters, digits and ``_``, starting
    with a letter (expressions may not read a name starting with ``_``)."""
    folded = re.sub(r"[^A-Za-z0-9_]", "_", str(name or fallback)).lstrip("_") or fallback
    return (f"{fallback[0]}_{folded}" if folded[0].isdigit() else folded)[:63]


def seconds(raw: Any, where: str) -> str:
    """An ISO-8601 duration (``PT1M30S``) as a Millrace one (``90s``)."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return f"{raw:g}s"
    match = _ISO.match(str(raw).strip().upper())
    if not isinstance(raw, str) or match is None or not any(match.groups()):
        raise Untranslatable(f"{where}: '{raw}' is not an ISO-8601 duration Millrace can read (e.g. PT30S)")
    d, h, m, s = (float(g or 0) for g in match.groups())
    return f"{d * 86400 + h * 3600 + m * 60 + s:g}s"


def kind_of(task_type: str) -> str:
    """``io.kestra.plugin.core.flow.Parallel`` or ``io.kestra.core.tasks.flows.Parallel`` -> ``flow.Parallel``."""
    for prefix, short in (("io.kestra.plugin.core.", ""), ("io.kestra.core.tasks.", ""),
                          ("io.kestra.plugin.scripts.", "scripts.")):
        if task_type.startswith(prefix):
            rest = task_type[len(prefix):]
            rest = re.sub(r"^(flows|executions|debugs)\.", lambda m: m.group(1)[:-1] + ".", rest)
            return short + rest
    return task_type


class Tasks:
    """Translates one flow's tasks, with the ids it hands out and what it notes."""

    def __init__(self, report: FileReport, flows: IdAllocator, names: Names, plugin_defaults: list[dict]):
        self.report = report
        self.flows = flows
        self.names = names
        self.plugin_defaults = plugin_defaults
        self.taken: set[str] = set()
        self.phase = "tasks"
        from orchestrator.importers import kestra_flowable

        self.flowable = kestra_flowable.Flowable(self)

    def note(self, verdict: Verdict, path: str, message: str) -> None:
        self.report.note(verdict, path, message)

    def step_id(self, original: Any, path: str) -> str:
        base = ident(original)
        candidate, n = base, 2
        while candidate in self.taken:
            candidate, n = f"{base[:58]}_{n}", n + 1
        self.taken.add(candidate)
        if candidate != original:
            self.report.renames[f"{path}.id {original}"] = candidate
        return candidate

    def names_here(self, scope: dict[str, str]) -> Names:
        return replace(self.names, outputs=scope)

    def sequence(self, tasks: Any, path: str, scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        """A task list's steps, and what it exports: each task id -> its result's expression."""
        if not isinstance(tasks, list):
            self.note(Verdict.UNTRANSLATABLE, path, "expected a list of tasks")
            return [], {}
        steps: list[dict] = []
        seen = dict(scope)
        exports: dict[str, str] = {}
        for i, task in enumerate(tasks):
            made, out = self.task(task, f"{path}[{i}]", seen)
            steps += made
            seen.update(out)
            exports.update(out)
        return steps, exports

    def task(self, task: Any, path: str, scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        if not isinstance(task, dict) or not isinstance(task.get("type"), str):
            sid = self.step_id(task.get("id") if isinstance(task, dict) else None, path)
            return [self.failing(sid, path, "?", "a task needs an id and a type")], {}
        task = self.with_defaults(task, path)
        kid, task_type = task.get("id"), task["type"]
        sid = self.step_id(kid, path)
        names = self.names_here(scope)
        names.constants = {**names.constants, "task.id": kid, "task.type": task_type}
        kind = kind_of(task_type)
        try:
            steps, exports = self.translate(kind, task, path, sid, names, scope)
            if task.get("errors") and steps:
                steps, exports = self.flowable.local_errors(steps, exports, task, path, sid, scope)
            head = next((s for s in steps if s["id"] == sid), None)
            if head is not None:
                self.options(head, task, path, names)
        except Untranslatable as exc:
            return [self.failing(sid, path, task_type, str(exc))], {kid: f"steps.{sid}.result"}
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a property of a shape Kestra refuses too
            return [self.failing(sid, path, task_type, f"a property has an unexpected shape ({exc})")], {}
        finally:
            for message in dict.fromkeys(names.approximations):
                self.note(Verdict.APPROXIMATED, path, message)
            names.approximations.clear()
        return steps, exports

    def translate(self, kind: str, task: dict, path: str, sid: str, names: Names,
                  scope: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
        mine = {task.get("id"): f"steps.{sid}.result"}
        leaf = self.leaf(kind, task, path, sid, names)
        if leaf is not None:
            self.note(Verdict.TRANSLATED, path, f"{task['type']} -> a {_kind(leaf)} step '{sid}'")
            return [leaf], mine
        made = self.flowable.translate(kind, task, path, sid, scope)
        if made is None:
            raise Untranslatable(f"Millrace has no equivalent of the Kestra plugin {task['type']}")
        return made

    def leaf(self, kind: str, task: dict, path: str, sid: str, names: Names) -> dict | None:
        """The step of a task that holds no tasks, or None when ``kind`` is not one."""
        if kind in ("log.Log", "debug.Echo", "debug.Return", "output.OutputValues", "execution.Fail"):
            step = self.coded(kind, task, sid, replace(names, runtime=True))
            if "condition" in task:
                step["if"] = pebble.condition(task["condition"], names)
            return step
        if kind == "execution.Labels":
            labels = task.get("labels") or {}
            if isinstance(labels, list):
                labels = {e.get("key"): e.get("value") for e in labels if isinstance(e, dict)}
            if not isinstance(labels, dict):
                raise Untranslatable("labels computed by a template: Millrace's labels are a mapping")
            return {"id": sid, "python": _NOTHING, "labels": {str(k): pebble.value(v, names)
                                                              for k, v in labels.items()}}
        if kind == "flow.Sleep":
            return {"id": sid, "sleep": seconds(task.get("duration"), f"{path}.duration")}
        if kind == "flow.Pause":
            return self.pause(task, path, sid)
        if kind == "execution.Exit":
            return self.exit(task, path, sid, names)
        if kind in ("flow.Subflow", "flow.Flow"):
            return self.subflow(task, path, sid, names)
        return self.script(kind, task, path, sid, names)

    def coded(self, kind: str, task: dict, sid: str, names: Names) -> dict:
        """Log, Echo, Return, OutputValues and Fail: a Python step given the task's values."""
        if kind in ("log.Log", "debug.Echo"):
            code, given = _LOG, {"message": pebble.value(task.get("message", task.get("format", "")), names),
                                 "level": str(task.get("level", "INFO"))}
        elif kind == "debug.Return":
            code, given = _RETURN, {"value": pebble.rendered(task.get("format"), names)}
        elif kind == "output.OutputValues":
            code, given = _VALUES, {"values": pebble.rendered(task.get("values", {}), names)}
        else:
            code, given = _FAIL, {"message": pebble.value(task.get("errorMessage", "Task failure"), names)}
        name = next(iter(given))
        if pebble.STARTED in repr(given):
            return {"id": sid, "python": _STARTED.format() + code.format(started=f"    {name} = started({name})\n"),
                    "with": given}
        return {"id": sid, "python": code.format(started=""), "with": given}

    def pause(self, task: dict, path: str, sid: str) -> dict:
        delay = task.get("delay", task.get("pauseDuration"))
        if delay is not None:
            return {"id": sid, "sleep": seconds(delay, f"{path}.delay")}
        approval: dict[str, Any] = {"description": task.get("description") or f"Resume the run (Kestra Pause "
                                                                                f"task '{task.get('id')}')"}
        if "timeout" in task:
            approval["timeout"] = seconds(task.pop("timeout"), f"{path}.timeout")
            resume = str(task.get("behavior", "RESUME")).upper() in ("RESUME", "WARN")
            approval["on_timeout"] = "approve" if resume else "reject"
        self.note(Verdict.APPROXIMATED, path, "Pause without a delay -> an approval step: resume it by approving "
                                              "(millrace approve, or the API); rejecting fails it")
        return {"id": sid, "approval": approval}

    def exit(self, task: dict, path: str, sid: str, names: Names) -> dict:
        state = str(task.get("state", "SUCCESS")).upper()
        if state in ("SUCCESS", "WARNING") and self.phase == "tasks":
            step: dict[str, Any] = {"id": sid, "python": _NOTHING, "stop_if": "${{ true }}"}
            if state == "WARNING":
                self.note(Verdict.APPROXIMATED, path, "Exit WARNING ends the run succeeded (Millrace has no "
                                                      "WARNING state)")
        elif state in ("SUCCESS", "WARNING"):
            step = {"id": sid, "python": _NOTHING}
            self.note(Verdict.APPROXIMATED, path, f"Exit in {self.phase}: the run is already ending; a step that "
                                                  "does nothing")
        else:
            step = {"id": sid, "python": _FAIL, "with": {"message": f"Exit with state {state}"}}
            if state != "FAILED":
                self.note(Verdict.APPROXIMATED, path, f"Exit {state} fails the run (a run cannot cancel itself)")
        if "condition" in task:
            step["if"] = pebble.condition(task["condition"], names)
        return step

    def subflow(self, task: dict, path: str, sid: str, names: Names) -> dict:
        namespace, flow_id = task.get("namespace"), task.get("flowId")
        if not isinstance(namespace, str) or not isinstance(flow_id, str) or pebble.has_template(namespace + flow_id):
            raise Untranslatable("a Subflow needs a literal namespace and flowId")
        inputs = task.get("inputs") or {}
        step = {"id": sid, "flow": self.flows.id_for(f"{namespace}.{flow_id}"),
                "with": {ident(k): pebble.value(v, names) for k, v in inputs.items()}}
        if task.get("wait") is False:
            self.note(Verdict.APPROXIMATED, f"{path}.wait", "wait: false -> the step waits for the subflow run "
                                                           "(a subflow step always does)")
        if task.get("transmitFailed") is False:
            step["continue_on_error"] = True
            self.note(Verdict.APPROXIMATED, f"{path}.transmitFailed", "transmitFailed: false -> continue_on_error")
        if "revision" in task:
            self.note(Verdict.APPROXIMATED, f"{path}.revision", "revision: the subflow's latest version runs "
                                                               "(Millrace numbers versions itself)")
        return step

    def script(self, kind: str, task: dict, path: str, sid: str, names: Names) -> dict | None:
        env = task.get("env") or {}
        before = [str(c) for c in task.get("beforeCommands") or []]
        files = task.get("inputFiles") or {}
        commands = [str(c) for c in task.get("commands") or []]
        if kind == "scripts.python.Commands" and len(commands) == 1 and \
                (m := re.fullmatch(r"python3?\s+(\S+\.py)", commands[0].strip())) and m.group(1) in files:
            kind, task = "scripts.python.Script", {**task, "script": files.pop(m.group(1))}
        if kind == "scripts.Python" and "main.py" in files:
            kind, task = "scripts.python.Script", {**task, "script": files.pop("main.py")}
            before += [f"pip install {r}" for r in task.get("requirements") or []]
        if kind == "scripts.python.Script":
            code = scripts.python_script(str(task.get("script", "")), env, before, names)
        elif kind in ("scripts.shell.Script", "scripts.shell.Commands", "scripts.Bash", "scripts.python.Commands",
                      "scripts.node.Commands"):
            lines = [str(task["script"])] if "script" in task else commands
            lines = [*(_write_file(k, v) for k, v in files.items()), *lines]
            files = {}
            code = scripts.shell(lines, env, before, names)
        elif kind == "scripts.node.Script":
            code = scripts.node_script(str(task.get("script", "")), env, names)
        else:
            return None
        for note in code.notes:
            self.note(Verdict.APPROXIMATED, path, note)
        if files:
            self.note(Verdict.APPROXIMATED, f"{path}.inputFiles", "inputFiles are not written: "
                                                                  f"{', '.join(map(str, files))}")
        for key in ("containerImage", "docker", "taskRunner", "outputFiles", "namespaceFiles"):
            if key in task:
                self.note(Verdict.APPROXIMATED, f"{path}.{key}", f"{key} has no counterpart: the step runs in "
                                                                 "Millrace's sandbox, with no files kept")
        return {"id": sid, code.kind: code.code, **({"with": code.with_} if code.with_ else {})}

    def options(self, step: dict, task: dict, path: str, names: Names) -> None:
        """The options every Kestra task takes, on the step that stands for it."""
        executable = _kind(step) in EXECUTABLE_KINDS
        if task.get("description") and "summary" not in step:
            step["summary"] = str(task["description"]).strip().splitlines()[0][:200]
        if task.get("disabled") is True:
            step["if"] = False
            self.note(Verdict.TRANSLATED, f"{path}.disabled", "disabled -> if: false (recorded as skipped)")
        elif "runIf" in task:
            step["if"] = pebble.condition(task["runIf"], names)
        if task.get("allowFailure") is True:
            step["continue_on_error"] = True
            self.note(Verdict.APPROXIMATED, f"{path}.allowFailure", "allowFailure -> continue_on_error (Kestra's "
                                                                    "WARNING state has no counterpart)")
        for key in ("retry", "timeout"):
            if key not in task:
                continue
            if not executable and not (key == "timeout" and "approval" in step):
                self.note(Verdict.APPROXIMATED, f"{path}.{key}", f"{key} applies to code steps only here: dropped")
            elif key == "timeout":
                step["timeout"] = seconds(task["timeout"], f"{path}.timeout")
            else:
                step["retry"] = self.retry(task["retry"], f"{path}.retry")
        if "workerGroup" in task and isinstance(task["workerGroup"], dict) and executable:
            step["queue"] = ident(task["workerGroup"].get("key"))
            self.note(Verdict.APPROXIMATED, f"{path}.workerGroup", "workerGroup -> queue (start a worker on it)")

    def retry(self, raw: Any, path: str) -> dict:
        if not isinstance(raw, dict):
            raise Untranslatable(f"{path}: a retry is a mapping")
        kind = str(raw.get("type", "constant")).lower()
        attempts = raw.get("maxAttempt", raw.get("maxAttempts", 1))
        retry: dict[str, Any] = {"attempts": max(int(attempts), 1)}
        if kind == "exponential":
            retry |= {"backoff": "exponential", "delay": seconds(raw.get("interval", "PT1S"), path)}
            if "maxInterval" in raw:
                retry["max_delay"] = seconds(raw["maxInterval"], path)
        elif kind == "random":
            retry["delay"] = seconds(raw.get("minInterval", "PT1S"), path)
            self.note(Verdict.APPROXIMATED, path, "a random retry interval -> its minimum, constant")
        else:
            retry["delay"] = seconds(raw.get("interval", "PT1S"), path)
        if "maxDuration" in raw:
            self.note(Verdict.APPROXIMATED, path, "retry maxDuration is not kept (attempts bound the retries)")
        return retry

    def with_defaults(self, task: dict, path: str) -> dict:
        """``pluginDefaults`` applied: values the task does not set (all of them when forced)."""
        for default in self.plugin_defaults:
            task_type = default.get("type", "")
            if task["type"] == task_type or (task_type and task["type"].startswith(task_type + ".")):
                values = default.get("values") or {}
                task = {**task, **values} if default.get("forced") else {**values, **task}
                self.note(Verdict.TRANSLATED, path, f"pluginDefaults of {task_type} applied")
        return task

    def failing(self, sid: str, path: str, task_type: str, reason: str) -> dict:
        message = f"Kestra task at {path} ({task_type}) was not imported: {reason}"
        self.note(Verdict.UNTRANSLATABLE, path, reason)
        return {"id": sid, "summary": f"not imported from Kestra: {task_type}"[:200],
                "python": f"def main():\n    raise NotImplementedError({message!r})\n"}


def _kind(step: dict) -> str:
    from orchestrator.definitions.steps import step_kind

    return step_kind(step) or "?"


def _write_file(name: str, content: Any) -> str:
    marker = "KESTRA_INPUT_FILE_END"
    return f"cat > {name!r} <<'{marker}'\n{content}\n{marker}"
