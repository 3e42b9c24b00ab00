"""What an import says, as text: per file, its flows, renames, findings by verdict with their
source path, and Millrace's own problems; and the YAML an imported document is written as."""
from __future__ import annotations

from typing import Any

import yaml

from orchestrator.importers.report import FileReport, Verdict

_ORDER = (Verdict.UNTRANSLATABLE, Verdict.APPROXIMATED, Verdict.TRANSLATED)


def report_lines(report: FileReport, *, verbose: bool = False) -> list[str]:
    """The lines of one file's report; translated constructs only counted unless ``verbose``."""
    flows = ", ".join(f.flow_id for f in report.flows) or "nothing imported"
    lines = [f"{report.source} -> {flows}"]
    lines += [f"  renamed        {original} -> {new}" for original, new in sorted(report.renames.items())]
    counts = {v: sum(1 for f in report.findings if f.verdict is v) for v in _ORDER}
    for verdict in _ORDER:
        if verdict is Verdict.TRANSLATED and not verbose:
            continue
        lines += [f"  {verdict.value:<14} {f.source_path}: {f.message}" for f in report.findings
                  if f.verdict is verdict]
    lines += [f"  invalid        {problem}" for problem in report.problems]
    lines.append("  " + ", ".join(f"{counts[v]} {v.value}" for v in reversed(_ORDER)))
    return lines


class _Literal(yaml.SafeDumper):
    """Code and other text of several lines written as YAML block scalars (``|``)."""


def _text(dumper: yaml.SafeDumper, value: str) -> Any:
    if "\n" in value and all(line == line.rstrip() for line in value.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Literal.add_representer(str, _text)


def document_text(document: dict[str, Any]) -> str:
    """An imported flow document as the YAML it is saved and written as (the same text each time)."""
    return yaml.dump(document, Dumper=_Literal, sort_keys=False, allow_unicode=True, width=120)
