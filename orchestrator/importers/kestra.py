"""Kestra flows (YAML: ``id``, ``namespace``, ``inputs``, ``tasks``, ``errors``, ``finally``,
``triggers``, ...) as Millrace flow documents, with a report of what became of each construct.

Pure: reads the files it is given, touches no database and no network. The tasks are
``kestra_tasks.py`` and ``kestra_flowable.py``, their templates ``kestra_pebble.py``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.importers import kestra_pebble as pebble
from orchestrator.importers.kestra_pebble import Names, Untranslatable
from orchestrator.importers.kestra_tasks import Tasks, ident
from orchestrator.importers.naming import IdAllocator
from orchestrator.importers.report import FileReport, ImportedFlow, Verdict

SUFFIXES = (".yaml", ".yml")
_TYPES: dict[str, dict[str, Any]] = {
    "STRING": {"type": "string"}, "INT": {"type": "integer"}, "INTEGER": {"type": "integer"},
    "FLOAT": {"type": "number"}, "NUMBER": {"type": "number"}, "BOOLEAN": {"type": "boolean"},
    "BOOL": {"type": "boolean"}, "DATETIME": {"type": "string", "format": "date-time"},
    "DATE": {"type": "string", "format": "date"}, "EMAIL": {"type": "string", "format": "email"},
    "URI": {"type": "string", "format": "uri"}, "ARRAY": {"type": "array"}, "SELECT": {"type": "string"},
    "ENUM": {"type": "string"}, "MULTISELECT": {"type": "array"},
}
# Kestra types Millrace keeps as a close type; the report says what differs.
_NEAR = {"TIME": ("string", "a time, kept as text"), "DURATION": ("string", "an ISO-8601 duration, kept as text"),
         "SECRET": ("string", "a secret input is a plain string here (store secrets with millrace secrets set)"),
         "JSON": ("object", "JSON -> object"), "YAML": ("object", "YAML -> object"),
         "FILE": ("string", "a file input -> a string (Millrace passes no files between runs)")}
_STATES = {"SUCCESS": "succeeded", "WARNING": "succeeded", "FAILED": "failed", "KILLED": "cancelled",
           "CANCELLED": "cancelled"}
_CASTS = {"INT": "int", "INTEGER": "int", "FLOAT": "float", "NUMBER": "float", "STRING": "string"}
_OUTPUTS = "def main(outputs: dict) -> dict:\n    return {\"outputs\": outputs}\n"


def source_files(paths: list[Path]) -> list[Path]:
    """The Kestra files under ``paths`` (a directory's YAML files, in path order)."""
    found: list[Path] = []
    for path in paths:
        found += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()) if path.is_dir() \
            else [path]
    return found


def translate(paths: list[Path]) -> list[FileReport]:
    """Every Kestra flow file under ``paths`` as a report holding its Millrace flow."""
    flows = IdAllocator()
    loaded: list[tuple[Path, Any, str | None]] = []
    for path in source_files(paths):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            error = None if isinstance(data, dict) else "not a Kestra flow (a mapping with id, namespace, tasks)"
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
            data, error = None, f"cannot be read: {exc}"
        if error is None and not (isinstance(data.get("id"), str) and isinstance(data.get("namespace"), str)):
            error = "not a Kestra flow: it needs a string `id` and `namespace`"
        if error is None:
            flows.id_for(f"{data['namespace']}.{data['id']}")  # ids in path order, whatever refers to what
        loaded.append((path, data, error))
    reports = []
    for path, data, error in loaded:
        report = FileReport(str(path))
        if error is not None:
            report.problems.append(error)
        else:
            try:
                report.flows.append(translate_flow(data, flows, report))
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                report.problems.append(f"a flow property has an unexpected shape: {exc!r}")
        reports.append(report)
    for report in reports:
        report.renames = {**{o: i for o, i in flows.renames().items() if any(f.original == o for f in report.flows)},
                          **report.renames}  # then the steps' and triggers' own
    return reports


def translate_flow(data: dict[str, Any], flows: IdAllocator, report: FileReport) -> ImportedFlow:
    original = f"{data['namespace']}.{data['id']}"
    doc: dict[str, Any] = {"id": flows.id_for(original)}
    if data.get("description"):
        doc["description"] = str(data["description"])
    inputs, renamed = _inputs(data.get("inputs") or [], report)
    if inputs:
        doc["inputs"] = inputs
    labels = _labels(data.get("labels"), report)
    names = Names(inputs=renamed, variables=data.get("variables") or {},
                  constants={"flow.id": data["id"], "flow.namespace": data["namespace"],
                             **{f"labels.{k}": v for k, v in labels.items()}})
    if labels:
        doc["labels"] = {k: str(v) for k, v in labels.items()}
    if "concurrency" in data:
        doc["concurrency"] = _concurrency(data["concurrency"], report)
    defaults = data.get("pluginDefaults") or data.get("taskDefaults") or []
    tasks = Tasks(report, flows, names, [d for d in defaults if isinstance(d, dict)])
    doc["steps"], exports = tasks.sequence(data.get("tasks") or [], "tasks", {})
    if isinstance(data.get("outputs"), list) and data["outputs"]:
        doc["steps"].append(_flow_outputs(data["outputs"], tasks, exports, report))
    if not doc["steps"]:
        report.note(Verdict.UNTRANSLATABLE, "tasks", "the flow has no tasks")
    for key, target in (("errors", "on_failure"), ("finally", "finally"), ("afterExecution", "finally")):
        if data.get(key):
            tasks.phase = key
            steps, _ = tasks.sequence(data[key], key, exports)
            doc.setdefault(target, []).extend(steps)
            if key == "afterExecution":
                report.note(Verdict.APPROXIMATED, key, "afterExecution -> finally (it runs after errors too)")
    if "retry" in data:
        _flow_retry(doc, tasks, data["retry"])
    triggers = [t for t in (_trigger(t, i, data, flows, report) for i, t in enumerate(data.get("triggers") or []))
                if t is not None]
    if data.get("disabled") is True:
        report.note(Verdict.APPROXIMATED, "disabled", "a disabled flow -> its cron triggers disabled (it can "
                                                      "still be started by hand)")
        triggers = [{**t, "enabled": False} if "cron" in t else t for t in triggers]
    if triggers:
        doc["triggers"] = triggers
    for key in sorted(set(data) - {"id", "namespace", "description", "inputs", "labels", "concurrency", "tasks",
                                   "errors", "finally", "afterExecution", "triggers", "variables", "pluginDefaults",
                                   "taskDefaults", "outputs", "disabled", "retry", "revision", "deleted"}):
        report.note(Verdict.UNTRANSLATABLE, key, f"the flow property '{key}' has no counterpart: not imported")
    for name in sorted(names.secrets):
        report.note(Verdict.APPROXIMATED, "secrets", f"secret('{name}') -> secrets.{name}: set it with "
                                                     f"`millrace secrets set {name}`")
    for name in sorted(names.kv):
        report.note(Verdict.APPROXIMATED, "kv", f"kv('{name}') -> vars.{name}: set it with "
                                                f"`millrace vars set {name} VALUE`")
    return ImportedFlow(doc["id"], original, doc)


def _inputs(raw: Any, report: FileReport) -> tuple[dict[str, Any], dict[str, str]]:
    inputs: dict[str, Any] = {}
    renamed: dict[str, str] = {}
    for i, spec in enumerate(raw if isinstance(raw, list) else []):
        where = f"inputs[{i}]"
        original = spec.get("id", spec.get("name")) if isinstance(spec, dict) else None
        if not isinstance(original, str):
            report.note(Verdict.UNTRANSLATABLE, where, "an input needs an id")
            continue
        name = renamed[original] = ident(original, "input")
        kind = str(spec.get("type", "STRING")).upper()
        out = dict(_TYPES.get(kind) or {"type": _NEAR.get(kind, ("string",))[0]})
        if kind in _NEAR:
            report.note(Verdict.APPROXIMATED, f"{where}.type", f"{kind}: {_NEAR[kind][1]}")
        elif kind not in _TYPES:
            report.note(Verdict.APPROXIMATED, f"{where}.type", f"the input type {kind} -> string")
        for key in ("description", "displayName"):
            if spec.get(key) and "description" not in out:
                out["description"] = str(spec[key])
        values = spec.get("values")
        if kind in ("SELECT", "ENUM") and isinstance(values, list):
            out["enum"] = values
        if kind == "MULTISELECT" and isinstance(values, list):
            out["items"] = {"type": "string", "enum": values}
        if kind == "ARRAY" and spec.get("itemType"):
            out["items"] = dict(_TYPES.get(str(spec["itemType"]).upper(), {"type": "string"}))
        for key, target in (("min", "minimum"), ("max", "maximum")):
            if isinstance(spec.get(key), int | float) and out["type"] in ("integer", "number"):
                out[target] = spec[key]
        default = spec.get("defaults", spec.get("default"))
        if default is not None:
            if pebble.has_template(default):
                report.note(Verdict.UNTRANSLATABLE, f"{where}.defaults", "a default computed by Pebble is not "
                                                                         "kept: the input is required")
            else:
                out["default"] = _typed(default, out["type"])
        elif spec.get("required") is False:
            out["default"] = None
        inputs[name] = out
        if name != original:
            report.note(Verdict.TRANSLATED, where, f"input '{original}' is input '{name}'")
    return inputs, renamed


def _typed(value: Any, kind: str) -> Any:
    """A default as its input's type (Kestra writes ``defaults: "3"`` for an INT)."""
    try:
        if kind == "integer" and isinstance(value, str):
            return int(value)
        if kind == "number" and isinstance(value, str):
            return float(value)
        if kind == "boolean" and isinstance(value, str):
            return value.strip().lower() == "true"
        if kind in ("object", "array") and isinstance(value, str):
            loaded = yaml.safe_load(value)
            return loaded if isinstance(loaded, dict | list) else value
    except (ValueError, yaml.YAMLError):
        return value
    return value


def _labels(raw: Any, report: FileReport) -> dict[str, Any]:
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, list):
        return {e.get("key"): e.get("value") for e in raw if isinstance(e, dict)}
    if raw is not None:
        report.note(Verdict.UNTRANSLATABLE, "labels", "labels are a mapping or a list of {key, value}")
    return {}


def _concurrency(raw: Any, report: FileReport) -> dict[str, Any]:
    raw = raw if isinstance(raw, dict) else {}
    behavior = str(raw.get("behavior", "QUEUE")).lower()
    if behavior not in ("queue", "cancel", "fail"):
        report.note(Verdict.APPROXIMATED, "concurrency.behavior", f"behavior {behavior} -> queue")
        behavior = "queue"
    report.note(Verdict.TRANSLATED, "concurrency", f"concurrency limit {raw.get('limit')}, on_limit {behavior}")
    return {"limit": raw.get("limit"), "on_limit": behavior}


def _flow_outputs(raw: list, tasks: Tasks, exports: dict[str, str], report: FileReport) -> dict[str, Any]:
    names = tasks.names_here(exports)
    sid = tasks.step_id("outputs", "outputs")
    try:
        values = {str(o.get("id")): _output(o, names) for o in raw if isinstance(o, dict)}
    except Untranslatable as exc:
        return tasks.failing(sid, "outputs", "flow outputs", str(exc))
    report.note(Verdict.TRANSLATED, "outputs", f"the flow's outputs -> a last step '{sid}'; the run's result is "
                                               "{outputs: {...}}, what a Subflow task reads")
    return {"id": sid, "summary": "the flow's outputs", "python": _OUTPUTS, "with": {"outputs": values}}


def _output(output: dict, names: Names) -> Any:
    """A flow output's value, as its declared type (Kestra casts it)."""
    cast = _CASTS.get(str(output.get("type", "STRING")).upper())
    return pebble.rendered(output.get("value"), names, cast) if cast else pebble.value(output.get("value"), names)


def _flow_retry(doc: dict[str, Any], tasks: Tasks, raw: Any) -> None:
    from orchestrator.definitions.steps import EXECUTABLE_KINDS, step_kind

    try:
        retry = tasks.retry(raw, "retry")
    except Untranslatable as exc:
        tasks.note(Verdict.UNTRANSLATABLE, "retry", str(exc))
        return
    for step in doc["steps"]:
        if step_kind(step) in EXECUTABLE_KINDS and "retry" not in step:
            step["retry"] = retry
    tasks.note(Verdict.APPROXIMATED, "retry", "the flow's retry -> a retry on each of its top-level code steps "
                                              "(Millrace retries steps, not whole runs)")


def _trigger(raw: Any, i: int, data: dict, flows: IdAllocator, report: FileReport) -> dict[str, Any] | None:
    where = f"triggers[{i}]"
    if not isinstance(raw, dict):
        report.note(Verdict.UNTRANSLATABLE, where, "a trigger is a mapping")
        return None
    kind = str(raw.get("type", "")).rsplit(".", 1)[-1]
    trigger_id = re.sub(r"[^A-Za-z0-9_-]", "_", str(raw.get("id") or f"trigger_{i + 1}"))[:63]
    base: dict[str, Any] = {"id": trigger_id if re.match(r"[A-Za-z_]", trigger_id) else f"t_{trigger_id}"[:63]}
    if base["id"] != raw.get("id"):
        report.renames[f"{where}.id {raw.get('id')}"] = base["id"]
    try:
        if kind == "Schedule":
            return base | _schedule(raw, where, report)
        if kind == "Flow":
            return base | _flow_trigger(raw, where, data, flows, report)
    except Untranslatable as exc:
        report.note(Verdict.UNTRANSLATABLE, where, f"{raw.get('type')}: {exc}")
        return None
    if kind == "Webhook":
        report.note(Verdict.APPROXIMATED, where, "Webhook -> enable the flow's own webhook: PUT "
                                                 "/api/v1/flows/<id>/webhook returns its token")
        return None
    report.note(Verdict.UNTRANSLATABLE, where, f"the trigger {raw.get('type')} has no counterpart: not imported")
    return None


def _schedule(raw: dict, where: str, report: FileReport) -> dict[str, Any]:
    cron = raw.get("cron", raw.get("expression"))
    if not isinstance(cron, str):
        raise Untranslatable("a Schedule needs a cron")
    out: dict[str, Any] = {"cron": cron, "timezone": raw.get("timezone", "UTC")}
    inputs = raw.get("inputs") or {}
    if any(pebble.has_template(v) for v in inputs.values()):
        raise Untranslatable("its inputs read Pebble (trigger.date...); a cron trigger's inputs are values")
    if inputs:
        out["inputs"] = {ident(k): v for k, v in inputs.items()}
    recover = str(raw.get("recoverMissedSchedules", "ALL")).lower()
    out["catchup"] = recover if recover in ("all", "last", "none") else "all"
    if raw.get("disabled") is True:
        out["enabled"] = False
    for key in ("conditions", "backfill", "lateMaximumDelay", "scheduleConditions"):
        if key in raw:
            report.note(Verdict.APPROXIMATED, f"{where}.{key}", f"{key} is not kept: the schedule fires on "
                                                                "every slot")
    if raw.get("withSeconds") is not True and len(cron.split()) == 6:
        raise Untranslatable("6 cron fields without withSeconds")
    report.note(Verdict.TRANSLATED, where, f"Schedule -> a cron trigger ({cron}, {out['timezone']}, catchup "
                                           f"{out['catchup']})")
    return out


def _flow_trigger(raw: dict, where: str, data: dict, flows: IdAllocator, report: FileReport) -> dict[str, Any]:
    upstream, states = [], None
    for condition in raw.get("conditions") or []:
        kind = str(condition.get("type", "")).rsplit(".", 1)[-1].removesuffix("Condition")
        if kind == "ExecutionFlow":
            upstream.append((condition.get("namespace"), condition.get("flowId")))
        elif kind == "ExecutionStatus":
            states = condition.get("in")
            if condition.get("notIn"):
                states = [s for s in _STATES if s not in condition["notIn"]]
        else:
            raise Untranslatable(f"the condition {condition.get('type')} has no counterpart")
    for flow in (raw.get("preconditions") or {}).get("flows") or []:
        upstream.append((flow.get("namespace"), flow.get("flowId")))
        states = flow.get("states", states)
    if len(upstream) != 1 or not all(isinstance(p, str) for p in upstream[0]):
        raise Untranslatable("a Flow trigger becomes one trigger on one flow: it names "
                             f"{len(upstream)} (by namespace and flowId)")
    status = sorted({_STATES.get(str(s).upper(), "succeeded") for s in states or ["SUCCESS"]})
    namespace, flow_id = upstream[0]

    def read(parts: list[str]) -> str:
        head = parts[0] if parts else ""
        if head == "executionId":
            return "trigger.run_id"
        if head == "outputs":
            return "trigger.result.outputs" + "".join(f"[{p!r}]" for p in parts[1:])
        if head in ("namespace", "flowId"):
            return repr(namespace if head == "namespace" else flow_id)
        if head == "state":
            return "trigger.status"
        raise Untranslatable(f"trigger.{'.'.join(parts)} has no counterpart")

    names = Names(trigger=read)
    out = {"flow": flows.id_for(f"{namespace}.{flow_id}"), "status": status,
           "inputs": {ident(k): pebble.value(v, names) for k, v in (raw.get("inputs") or {}).items()}}
    report.note(Verdict.TRANSLATED, where, f"Flow trigger -> a flow trigger on {out['flow']} ({', '.join(status)})")
    return out
