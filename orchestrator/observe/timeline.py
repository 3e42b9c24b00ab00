"""A run's timeline as an SVG Gantt chart: one row per step attempt (for_each items
included), a light bar while it waited in the queue (created -> started), a solid bar while
it executed (started -> finished), coloured by its outcome; an outcome a restart reused is a
dashed mark where it was reused, since it ran in the run it came from."""
from __future__ import annotations

import datetime as dt
from html import escape

from orchestrator.store.views import RunView

ROW = 22
LABEL_W = 300
CHART_W = 760
TOP = 58
COLOURS = {"succeeded": "#2f9e44", "failed": "#e03131", "skipped": "#adb5bd", "running": "#1c7ed6",
           "waiting": "#f08c00"}
WAITING = "#dee2e6"


def render_timeline(run: RunView, now: dt.datetime | None = None) -> str:
    """The SVG text for ``run``, read with its steps."""
    now = now or dt.datetime.now(dt.UTC)
    start = run.created_at
    end = run.finished_at or now
    for step in run.steps:
        end = max(end, step.finished_at or now if step.started_at else end)
    span = max((end - start).total_seconds(), 0.001)

    def x(at: dt.datetime | None) -> float:
        at = at or now
        return LABEL_W + (at - start).total_seconds() / span * CHART_W

    steps = run.steps
    height = TOP + ROW * max(len(steps), 1) + 40
    width = LABEL_W + CHART_W + 20
    title = (f"{run.flow_id} v{run.flow_version} · run {run.id} · {run.status.value} · "
             f"{_duration(span)}")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<title>{escape(title)}</title>',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
        '<text x="10" y="40" fill="#555">light: waiting in the queue (created → started) · '
        'solid: executing (started → finished)</text>',
    ]
    for tick in range(6):
        tx = LABEL_W + tick * CHART_W / 5
        parts.append(f'<line x1="{tx:.1f}" y1="{TOP - 6}" x2="{tx:.1f}" y2="{height - 34}" stroke="#eee"/>')
        parts.append(f'<text x="{tx:.1f}" y="{height - 20}" text-anchor="middle" fill="#555">'
                     f'{_duration(span * tick / 5)}</text>')
    for i, step in enumerate(steps):
        y = TOP + i * ROW
        label = step.path + (f" (attempt {step.attempt})" if step.attempt > 1 else "")
        if step.reused_from:
            label += " (reused)"
        parts.append(f'<text x="{LABEL_W - 8}" y="{y + 15}" text-anchor="end">{escape(label[-48:])}</text>')
        colour = COLOURS.get(step.status, "#868e96")
        if step.reused_from:  # nothing ran: a mark where it was reused, not a bar
            parts.append(_reused(x(step.started_at), y, colour, f"{label}: {step.status.value}, reused from run "
                                                                f"{step.reused_from}"))
            continue
        created, started, finished = step.created_at, step.started_at, step.finished_at
        if created is not None and started is not None:
            parts.append(_bar(x(created), x(started), y, WAITING,
                              f"{label}: waited {_seconds(started - created)}"))
        if started is not None:
            what = f"{label}: {step.status.value}, ran {_seconds((finished or now) - started)}"
            if step.error:
                what += f" — {step.error[:200]}"
            parts.append(_bar(x(started), x(finished), y, colour, what))
        elif finished is not None:  # skipped, or decided without running
            parts.append(_bar(x(finished), x(finished), y, colour, f"{label}: {step.status.value}"))
    parts.append("</svg>")
    return "\n".join(parts)


def _reused(x1: float, y: int, colour: str, tooltip: str) -> str:
    return (f'<rect x="{x1:.1f}" y="{y + 4}" width="14" height="{ROW - 8}" rx="2" fill="white" stroke="{colour}" '
            f'stroke-dasharray="3 2"><title>{escape(tooltip)}</title></rect>')


def _bar(x1: float, x2: float, y: int, colour: str, tooltip: str) -> str:
    return (f'<rect x="{x1:.1f}" y="{y + 4}" width="{max(x2 - x1, 2):.1f}" height="{ROW - 8}" rx="2" '
            f'fill="{colour}"><title>{escape(tooltip)}</title></rect>')


def _seconds(delta: dt.timedelta) -> str:
    return _duration(delta.total_seconds())


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
