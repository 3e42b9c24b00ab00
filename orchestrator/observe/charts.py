"""A stored bench result as an SVG chart: per scenario, Millrace's median run time split
into assignment, execution, transition and the rest, next to the raw Celery baseline."""
from __future__ import annotations

from html import escape
from typing import Any

PARTS = (("assignment", "#f08c00"), ("execution", "#2f9e44"), ("transition", "#1c7ed6"), ("other", "#adb5bd"))
RAW = "#495057"
LABEL_W, BAR_W, ROW = 150, 620, 64


def render_chart(bench: dict[str, Any]) -> str:
    stored = bench["summary"]["scenarios"]
    order = ["light40", "long10", "fanout40", "throughput"]
    scenarios = {name: stored[name] for name in sorted(stored, key=lambda n: (order + [n]).index(n))}
    height = 90 + ROW * len(scenarios) + 30
    width = LABEL_W + BAR_W + 180
    head = (f"millrace bench #{bench['id']} · {bench.get('git_revision') or 'unknown revision'} · "
            f"{bench['machine'].get('cpus')} CPUs · {bench['created_at']:%Y-%m-%d %H:%M} UTC")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="22" font-size="14" font-weight="bold">{escape(head)}</text>']
    x = LABEL_W
    for name, colour in (*PARTS, ("raw Celery", RAW)):
        out.append(f'<rect x="{x}" y="36" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{x + 16}" y="46">{name}</text>')
        x += 110
    for i, (name, s) in enumerate(scenarios.items()):
        y = 80 + i * ROW
        scale = BAR_W / max(s["millrace_s"], s["raw_s"], 1e-9)
        out.append(f'<text x="10" y="{y + 14}" font-weight="bold">{escape(name)}</text>')
        out.append(f'<text x="10" y="{y + 36}" fill="#555">ratio {s["ratio"]}</text>')
        segments = _segments(s)
        cx = LABEL_W
        for part, colour in PARTS:
            w = segments.get(part, 0.0) * scale
            if w > 0:
                out.append(f'<rect x="{cx:.1f}" y="{y}" width="{w:.1f}" height="20" fill="{colour}">'
                           f'<title>{part}: {segments[part] * 1000:.1f} ms</title></rect>')
                cx += w
        out.append(f'<text x="{cx + 6:.1f}" y="{y + 15}">Millrace {s["millrace_s"] * 1000:.0f} ms</text>')
        raw_w = s["raw_s"] * scale
        out.append(f'<rect x="{LABEL_W}" y="{y + 24}" width="{raw_w:.1f}" height="20" fill="{RAW}"/>')
        out.append(f'<text x="{LABEL_W + raw_w + 6:.1f}" y="{y + 39}">raw {s["raw_s"] * 1000:.0f} ms</text>')
    out.append("</svg>")
    return "\n".join(out)


def _segments(s: dict[str, Any]) -> dict[str, float]:
    """Median seconds of each part of a Millrace run (throughput runs have no breakdown)."""
    per_step = s.get("breakdown_ms_per_step")
    if not per_step or not s.get("sequential"):
        return {"other": s["millrace_s"]}
    parts = {k: v * s["steps"] / 1000 for k, v in per_step.items()}
    parts["other"] = max(s["millrace_s"] - sum(parts.values()), 0.0)
    return parts
