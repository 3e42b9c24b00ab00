"""Windmill to Millrace (pure): a ``wmill sync pull`` tree, or plain OpenFlow JSON/YAML files.

``translate(paths)`` reads the files and returns one FileReport per source: a flow
(``x.flow/flow.yaml`` with its ``!inline`` scripts, or a plain OpenFlow file), a saved
script (``x.script.yaml`` with its code file) or a schedule (``x.schedule.yaml``, which
becomes a cron trigger of its flow). The modules themselves are ``windmill_modules.py``,
the code ``windmill_code.py``, the expressions ``windmill_expressions.py``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from orchestrator.importers.naming import IdAllocator
from orchestrator.importers.report import FileReport, ImportedFlow, ImportedScript, Verdict
from orchestrator.importers.windmill_code import Variables, language_of, translate_code
from orchestrator.importers.windmill_expressions import ExprScope, Untranslatable
from orchestrator.importers.windmill_modules import MALFORMED, ModuleTranslator, SavedScript, Targets

_FLOW_FOLDERS = (".flow", "__flow")  # wmill's folder for a flow (`__flow` with nonDottedPaths)
_INPUT_TYPES = {"string", "integer", "number", "boolean", "array", "object"}
_FORMATS = {"date", "date-time", "email", "uri"}
_FLOW_KEYS = {"summary", "description", "value", "schema", "path"}
_VALUE_KEYS = {"modules", "failure_module", "preprocessor_module", "concurrent_limit", "concurrency_time_window_s"}
_SCRIPT_LANGUAGE = {"python": "python", "bash": "bash", "javascript": "javascript", "typescript": "typescript",
                    "sql": "sql"}


_READS = re.compile(r"\b(vars|secrets)\.([A-Za-z_][A-Za-z0-9_]*)")
_INPUT_READS = re.compile(r"\binputs\.([A-Za-z_][A-Za-z0-9_]*)")
_DATABASES = re.compile(r'"database": "([A-Za-z_][A-Za-z0-9_]*)"')


class _Loader(yaml.SafeLoader):
    """YAML with ``!inline file`` read as the string ``wmill`` writes in its place."""


_Loader.add_constructor("!inline", lambda loader, node: "!inline " + loader.construct_scalar(node))


@dataclass(frozen=True)
class _Source:
    kind: str  # flow, script, schedule
    path: Path  # the file read (flow.yaml, x.script.yaml, x.schedule.yaml, x.json)
    name: str  # Windmill's path: f/folder/name


def _load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_Loader)  # noqa: S506 - safe


def _windmill_path(path: Path, root: Path, ending: str) -> str:
    """``.../f/folder/name<ending>`` -> ``f/folder/name`` (from the last ``f``/``u`` folder of a
    sync tree); outside one, the path relative to the folder imported."""
    parts = path.resolve().parts
    starts = [i for i, part in enumerate(parts[:-2]) if part in ("f", "u")]
    if starts:
        relative = "/".join(parts[starts[-1]:])
    elif path != root and path.is_relative_to(root):
        relative = path.relative_to(root).as_posix()
    else:
        relative = path.name
    return relative.removesuffix(ending)


def _discover(paths: list[Path]) -> tuple[list[_Source], Variables]:
    sources: list[_Source] = []
    secret, plain = set(), set()
    for given in paths:
        root = given if given.is_dir() else given.parent
        files = sorted(p for p in given.rglob("*") if p.is_file()) if given.is_dir() else [given]
        for path in files:
            posix = path.as_posix()
            if path.name in ("flow.yaml", "flow.json") and path.parent.name.endswith(_FLOW_FOLDERS):
                ending = next(e for e in _FLOW_FOLDERS if path.parent.name.endswith(e))
                sources.append(_Source("flow", path, _windmill_path(path.parent, root, ending)))
            elif posix.endswith(".script.yaml") or posix.endswith(".script.json"):
                sources.append(_Source("script", path, _windmill_path(path, root, path.name[path.name.index(
                    ".script."):])))
            elif posix.endswith(".schedule.yaml") or posix.endswith(".schedule.json"):
                sources.append(_Source("schedule", path, _windmill_path(path, root, path.name[path.name.index(
                    ".schedule."):])))
            elif posix.endswith((".variable.yaml", ".variable.json")):
                data = _quiet_load(path)
                name = _windmill_path(path, root, path.name[path.name.index(".variable."):])
                (secret if not isinstance(data, dict) or data.get("is_secret", True) else plain).add(name)
            elif (path.suffix in (".json", ".yaml", ".yml") and not given.is_dir()) or _is_openflow(path):
                sources.append(_Source("flow", path, _windmill_path(path, root, path.suffix)))
    return sources, Variables(frozenset(secret), frozenset(plain))


def _quiet_load(path: Path) -> Any:
    try:
        return _load(path)
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _is_openflow(path: Path) -> bool:
    """A plain JSON/YAML file holding an OpenFlow (``value.modules``, or ``modules`` alone)."""
    if path.suffix not in (".json", ".yaml", ".yml") or path.parent.name.endswith(_FLOW_FOLDERS) or "." in path.stem:
        return False
    data = _quiet_load(path)
    return isinstance(data, dict) and (isinstance(data.get("value"), dict) and "modules" in data["value"]
                                       or isinstance(data.get("modules"), list))


def translate(paths: list[Path]) -> list[FileReport]:
    """Every Windmill flow, script and schedule in ``paths`` (files or sync trees), translated."""
    sources, variables = _discover([Path(p) for p in paths])
    flow_ids, script_ids = IdAllocator(), IdAllocator()
    flows = {s.name: flow_ids.id_for(s.name) for s in sources if s.kind == "flow"}
    reports: dict[Path, FileReport] = {}
    scripts: dict[str, SavedScript] = {}
    for source in (s for s in sources if s.kind == "script"):
        report = reports[source.path] = FileReport(str(source.path))
        scripts[source.name] = _guarded(report, SavedScript(source.name, "bash", {}), _script, source,
                                        script_ids.id_for(source.name), variables, report)
    targets = Targets(flows, scripts)
    documents: dict[str, dict[str, Any]] = {}
    for source in (s for s in sources if s.kind == "flow"):
        report = reports[source.path] = FileReport(str(source.path))
        documents[source.name] = _guarded(report, {}, _flow, source, flows[source.name], variables, targets, report)
    for source in (s for s in sources if s.kind == "schedule"):
        report = reports[source.path] = FileReport(str(source.path))
        _guarded(report, None, _schedule, source, documents, flow_ids, scripts, report)
    renames = {**flow_ids.renames(), **script_ids.renames()}
    for source in sources:
        if source.name in renames:
            reports[source.path].renames[source.name] = renames[source.name]
    return [reports[s.path] for s in sources]


def _guarded(report: FileReport, otherwise: Any, translate_file: Callable[..., Any], *args: Any) -> Any:
    """A file's translation, or ``otherwise`` with the problem reported when the file is not the
    Windmill format as documented (a list where a mapping belongs, a text where a number does)."""
    try:
        return translate_file(*args)
    except MALFORMED as exc:
        report.flows.clear()
        report.scripts.clear()
        report.problems.append(f"not Windmill's format as documented: {exc}")
        return otherwise


def _read_inline(folder: Path, name: str) -> str:
    target = (folder / name).resolve()
    if not target.is_relative_to(folder.resolve()) or not target.is_file():
        raise Untranslatable(f"the inline script '{name}' is not a file beside the flow")
    return target.read_text(encoding="utf-8")


def _flow(source: _Source, flow_id: str, variables: Variables, targets: Targets,
          report: FileReport) -> dict[str, Any]:
    try:
        data = _load(source.path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        report.problems.append(f"cannot read {source.path}: {exc}")
        return {}
    if not isinstance(data, dict):
        report.problems.append(f"{source.path} is not an OpenFlow mapping")
        return {}
    value = data.get("value") if isinstance(data.get("value"), dict) else data
    original = str(data.get("path") or source.name)
    translator = ModuleTranslator(report, variables, targets, partial(_read_inline, source.path.parent))
    document: dict[str, Any] = {"id": flow_id}
    for key in ("summary", "description"):
        if data.get(key):
            document[key] = str(data[key])
    for key in sorted(set(data) - _FLOW_KEYS - ({"modules"} | _VALUE_KEYS if value is data else set())):
        report.note(Verdict.APPROXIMATED, key, f"`{key}` is not imported")
    for key in sorted(set(value) - _VALUE_KEYS) if value is not data else ():
        report.note(Verdict.APPROXIMATED, f"value.{key}", f"`{key}` is not imported")
    prefix = "value." if value is not data else ""
    inputs = _inputs(data.get("schema"), report)
    if inputs:
        document["inputs"] = inputs
    scope = ExprScope(previous="inputs", variable=variables.variable)
    steps = translator.sequence(value.get("modules") or [], f"{prefix}modules", scope, False)
    if not steps:
        report.problems.append("the flow has no modules; a Millrace flow has at least one step")
    document["steps"] = steps
    if isinstance(value.get("failure_module"), dict):
        failure_scope = ExprScope(results=dict(scope.results), error=True, variable=variables.variable,
                                  previous="({'error': {'message': run.error}})")  # Windmill's {error: {...}}
        document["on_failure"] = translator.module(value["failure_module"], f"{prefix}failure_module",
                                                   failure_scope, False)
    if value.get("preprocessor_module"):
        report.note(Verdict.APPROXIMATED, f"{prefix}preprocessor_module", (
            "not imported: Windmill runs it only for runs started by webhooks, HTTP routes and event triggers, "
            "which this import does not create; a Millrace event trigger's `inputs:` expressions shape its inputs"))
    if value.get("concurrent_limit"):
        document["concurrency"] = {"limit": int(value["concurrent_limit"])}
        report.note(Verdict.APPROXIMATED, f"{prefix}concurrent_limit", (
            f"at most {value['concurrent_limit']} active runs (Windmill counts starts per "
            f"{value.get('concurrency_time_window_s', 0)}s window)"))
    variables.declared.clear()
    text = json.dumps(document)
    for name in sorted(set(_INPUT_READS.findall(text)) - set(inputs)):
        document.setdefault("inputs", {})[name] = {"type": "string", "default": None}
        report.note(Verdict.APPROXIMATED, "schema", f"flow_input.{name} is read but not in the schema: an optional "
                                                    "string input")
    reads = {*_READS.findall(text), *(("secrets", name) for name in _DATABASES.findall(text))}
    for kind, name in sorted(reads):
        report.note(Verdict.TRANSLATED, "variables", f"reads {'a secret' if kind == 'secrets' else 'a variable'} "
                    f"'{name}': set it with `millrace {kind} set {name}`")
    report.flows.append(ImportedFlow(flow_id, original, document))
    return document


def _inputs(schema: Any, report: FileReport) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    required = {r for r in schema.get("required") or [] if isinstance(r, str)}
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    inputs: dict[str, Any] = {}
    for name, spec in properties.items():
        where = f"schema.properties.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name) or not isinstance(spec, dict):
            report.problems.append(f"{where}: input '{name}' is not a Millrace input name (letters, digits, _)")
            continue
        kind = spec.get("type", "string")
        out: dict[str, Any] = {"type": kind if kind in _INPUT_TYPES else "string"}
        if kind not in _INPUT_TYPES:
            report.note(Verdict.APPROXIMATED, f"{where}.type", f"type {kind!r} -> string")
        if str(spec.get("format", "")).startswith("resource-"):
            report.note(Verdict.APPROXIMATED, f"{where}.format", "a resource input: the caller passes its value")
        elif spec.get("format") in _FORMATS:
            out["format"] = spec["format"]
        for key in ("description", "enum", "minimum", "maximum"):
            if spec.get(key) not in (None, ""):
                out[key] = spec[key]
        if isinstance(spec.get("items"), dict) and spec["items"].get("type") in _INPUT_TYPES:
            out["items"] = {k: v for k, v in spec["items"].items() if k in ("type", "enum")}
        if spec.get("default") is not None:
            out["default"] = spec["default"]
        elif name not in required:
            out["default"] = None
        inputs[name] = out
    return inputs


def _script(source: _Source, path: str, variables: Variables, report: FileReport) -> SavedScript:
    meta = _quiet_load(source.path)
    meta = meta if isinstance(meta, dict) else {}
    stem = source.path.name[:source.path.name.index(".script.")]
    code_files = [p for p in sorted(source.path.parent.glob(f"{stem}.*"))
                  if ".script." not in p.name and language_of(p.name)]
    if not code_files:
        report.problems.append(f"no code file beside {source.path.name} ({stem}.py, .ts, .sh, .pg.sql, ...)")
        return SavedScript(path, "bash", {})
    code_file = code_files[0]
    language = str(meta.get("language") or language_of(code_file.name))
    summary = str(meta.get("summary") or "")[:500] or None
    try:
        code = translate_code(language, code_file.read_text(encoding="utf-8"), variables)
    except Untranslatable as exc:
        report.note(Verdict.UNTRANSLATABLE, code_file.name, str(exc))
        message = f"untranslatable Windmill script {source.name}: {exc}"
        failing = "echo " + json.dumps(message) + " >&2\nexit 1\n"
        report.scripts.append(ImportedScript(path, "bash", failing, summary))
        return SavedScript(path, "bash", {})
    for verdict, message in code.notes:
        report.note(verdict, code_file.name, message)
    for name, kind in sorted(variables.declared.items()):
        report.note(Verdict.TRANSLATED, code_file.name, f"reads {kind} '{name}' (passed by the steps that call it)")
    variables.declared.clear()
    report.note(Verdict.TRANSLATED, code_file.name, f"{language} script -> {_SCRIPT_LANGUAGE[code.key]} script "
                                                    f"{path}")
    report.scripts.append(ImportedScript(path, _SCRIPT_LANGUAGE[code.key], code.code, summary))
    return SavedScript(path, code.key, code.extra)


def _schedule(source: _Source, documents: dict[str, dict[str, Any]], flow_ids: IdAllocator,
              scripts: dict[str, SavedScript], report: FileReport) -> None:
    data = _quiet_load(source.path)
    if not isinstance(data, dict) or not data.get("schedule") or not data.get("script_path"):
        report.problems.append(f"{source.path.name} is not a Windmill schedule (schedule and script_path)")
        return
    target = str(data["script_path"])
    trigger: dict[str, Any] = {"id": re.sub(r"[^A-Za-z0-9_-]", "_", source.name.rsplit("/", 1)[-1])[:63],
                               "cron": str(data["schedule"]), "timezone": str(data.get("timezone") or "UTC"),
                               "catchup": "none", "enabled": bool(data.get("enabled", True))}
    if data.get("no_flows_overlap"):
        trigger["overlap"] = "skip"
    if data.get("args"):
        trigger["inputs"] = data["args"]
    for key in ("on_failure", "on_recovery", "on_success", "retry"):
        if data.get(key):
            report.note(Verdict.APPROXIMATED, key, f"the schedule's `{key}` handler is not imported (use the flow's "
                                                   "on_failure)")
    if data.get("is_flow", True):
        if target not in documents or not documents[target]:
            report.problems.append(f"flow '{target}' is not in this import; import it with its schedule")
            return
        documents[target].setdefault("triggers", []).append(trigger)
        report.note(Verdict.TRANSLATED, "schedule", f"-> trigger {trigger['id']} of flow {documents[target]['id']} "
                                                    "(saved with the flow); missed slots are not caught up, as in "
                                                    "Windmill")
        return
    if target not in scripts:
        report.problems.append(f"script '{target}' is not in this import; import it with its schedule")
        return
    flow_id = flow_ids.id_for(f"{target}_schedule")
    step = {"id": "run", "script": scripts[target].path, **({"with": trigger.pop("inputs")} if "inputs" in trigger
                                                            else {})}
    document = {"id": flow_id, "summary": f"runs script {scripts[target].path} on schedule", "triggers": [trigger],
                "steps": [step]}
    report.note(Verdict.APPROXIMATED, "script_path", f"a scheduled script -> flow {flow_id} running it")
    report.flows.append(ImportedFlow(flow_id, source.name, document))
