"""Imported flows checked by Millrace's own parser and checks, each problem named by flow and path."""
from __future__ import annotations

from orchestrator.definitions.parser import flow_from_data
from orchestrator.errors import ValidationError
from orchestrator.importers.report import FileReport


def check(reports: list[FileReport]) -> list[FileReport]:
    """Each report with the problems Millrace's validation finds in its flows added."""
    for report in reports:
        for flow in report.flows:
            try:
                flow_from_data(flow.document)
            except ValidationError as exc:
                report.problems += [f"{flow.flow_id}: {problem}" for problem in exc.problems]
    return reports
