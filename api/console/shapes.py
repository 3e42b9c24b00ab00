"""What the console's pages show of the records: a run's graph, a flow's versions as diffs,
its highlighted source."""
from __future__ import annotations

import difflib
import re
from typing import Any

from markupsafe import Markup, escape

from orchestrator.definitions.parser import flow_from_stored
from orchestrator.store import versions, views


def graph(engine: Any, view: Any) -> list[dict[str, Any]]:
    """The flow's steps as the run went: each with its latest attempt's status; parallel
    branches side by side, for_each items and loop iterations folded with their counts (and
    where a `break_if` ended them), switch cases with the one taken marked, subflow steps with
    their child run, outcomes a restart reused marked, the step whose stop_if ended the run marked,
    and the on_failure and finally steps after them."""
    from orchestrator.definitions.steps import ForEachStep, LoopStep, ParallelStep, SubflowStep, SwitchStep

    _, document = versions.load_flow_document(engine, view.flow_id, view.flow_version)
    latest = {s.path: s for s in view.steps}
    indices: dict[str, set[int]] = {}  # a for_each's path -> the items it ran, built in one pass
    for recorded in latest:
        for mark in re.finditer(r"\[(\d+)\]", recorded):
            indices.setdefault(recorded[:mark.start()], set()).add(int(mark.group(1)))
    broke = {s.broke_at for s in view.steps if s.broke_at}  # the steps whose break_if held
    children = views.subflow_runs(engine, view.id) if any(s.kind == "flow" for s in view.steps) else {}

    def sequence(steps: list[Any], prefix: str) -> list[dict[str, Any]]:
        return [node(step, prefix + step.id) for step in steps]

    def node(step: Any, path: str) -> dict[str, Any]:
        row = latest.get(path)
        out: dict[str, Any] = {"id": step.id, "path": path, "kind": _kind(step),
                               "status": row.status.value if row else "pending", "attempt": row.attempt if row else 0,
                               "broke": path in broke, "reused": row.reused_from if row else None,
                               "stopped": path == view.stopped_at}
        if isinstance(step, ParallelStep):
            out["branches"] = [{"label": b.id, "steps": sequence(b.steps, f"{path}.{b.id}.")} for b in step.parallel]
        elif isinstance(step, ForEachStep | LoopStep):
            body = step.do if isinstance(step, ForEachStep) else step.loop.do
            items = [{"index": i, "steps": sequence(body, f"{path}[{i}].")} for i in sorted(indices.get(path, ()))]
            counts: dict[str, int] = {}
            for item in items:
                last = item["steps"][-1]["status"] if item["steps"] else "pending"
                counts[last] = counts.get(last, 0) + 1
            out["item_list"], out["counts"] = items, counts
            out["item_word"] = "item" if isinstance(step, ForEachStep) else "iteration"
            out["broke_at"] = row.broke_at if row else None
        elif isinstance(step, SwitchStep):
            cases = [(f"case {i}: {case.if_}", case.do) for i, case in enumerate(step.switch)]
            cases += [("else", step.else_)] if step.else_ else []
            out["cases"] = [{"label": label, "steps": sequence(do, f"{path}."),
                             "taken": any(f"{path}.{s.id}" in latest for s in do)} for label, do in cases]
        elif isinstance(step, SubflowStep) and row is not None:
            out["child"] = children.get(row.id)
        return out

    flow = flow_from_stored(document)
    nodes = sequence(flow.steps, "")
    for key, steps in (("on_failure", flow.on_failure), ("finally", flow.finally_)):
        if steps:  # run after the steps (on_failure after a failure; finally always), drawn as a phase of their own
            inner = sequence(steps, f"{key}.")
            ran = [n["status"] for n in inner if n["status"] != "pending"]
            nodes.append({"id": key, "path": key, "kind": "phase", "status": ran[-1] if ran else "pending",
                          "attempt": 0, "broke": False, "reused": None, "phase": inner})
    return nodes


def _kind(step: Any) -> str:
    from orchestrator.definitions.steps import step_kind

    return step_kind(step) or "step"


def diffs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest versions first, each with its diff against the one before (when shown)."""
    out = []
    for before, row in zip([None, *rows], rows, strict=False):
        if before is None and row["version"] > 1:
            continue  # the version before it is not in the window: it only serves as the base
        previous = before["source"] if before else ""
        diff = "".join(difflib.unified_diff(previous.splitlines(True), row["source"].splitlines(True),
                                            f"version {row['version'] - 1}", f"version {row['version']}"))
        created = row["created_at"].isoformat() if row["created_at"] else None
        out.append({"version": row["version"], "created_at": created, "diff": diff})
    return out[::-1]


_YAML_TOKEN = re.compile(r"(?P<comment>(?:^|(?<=\s))#.*$)|(?P<expr>\$\{\{.{0,500}?\}\})"
                         r"|(?P<key>^\s*(?:- )?[\w.-]{1,200}(?=:(?:\s|$)))"
                         r"|(?P<string>\"(?:[^\"\\\n]|\\.){0,500}\"|'[^'\n]{0,500}')")
LONGEST_MARKED = 2000  # a longer line is shown as it is: marking it would cost more than it shows
LARGEST_MARKED = 100_000  # and so is a longer source (the marks are bounded; their tries are not free)


def highlight(source: str) -> Markup:
    """A flow's source with its keys, strings, expressions and comments marked (escaped first)."""
    if len(source) > LARGEST_MARKED:
        return escape(source)
    lines = []
    for line in source.splitlines():
        if len(line) > LONGEST_MARKED:
            lines.append(escape(line))
            continue
        out, pos = [], 0
        for match in _YAML_TOKEN.finditer(line):
            out.append(escape(line[pos:match.start()]))
            out.append(Markup(f'<span class="y-{match.lastgroup}">') + escape(match.group()) + Markup("</span>"))
            pos = match.end()
        out.append(escape(line[pos:]))
        lines.append(Markup("").join(out))
    return Markup("\n").join(lines)
