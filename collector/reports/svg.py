"""Charts drawn on the server as inline SVG: no JavaScript, readable in a PDF and by a screen reader.

Every chart has a <title> and <desc> (named by aria-labelledby) and writes its numbers as text next to the marks;
the page that shows a chart also shows the table behind it. All text goes through XML escaping.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape

from markupsafe import Markup

FONT = "font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"12\""
BAR_COLOUR = "#2f5d8a"
HIGH_COLOUR = "#b3261e"
# Severity 1..5, from calm to urgent; 5 is dark enough for white text.
SEVERITY_COLOURS = {0: "#9e9e9e", 1: "#c7d7e8", 2: "#8fb3d9", 3: "#f0b54a", 4: "#e0703a", 5: "#9b1c1c"}


def _x(text: object) -> str:
    return escape(str(text), {'"': "&quot;"})


def _open(chart_id: str, width: int, height: int, title: str, desc: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" aria-labelledby="{chart_id}-title {chart_id}-desc">',
            f'<title id="{chart_id}-title">{_x(title)}</title>', f'<desc id="{chart_id}-desc">{_x(desc)}</desc>']


def _describe(items: Sequence[tuple[str, int]]) -> str:
    return "; ".join(f"{label}: {value}" for label, value in items) or "nothing to show"


def bar_chart(chart_id: str, title: str, items: Sequence[tuple[str, int]], width: int = 560) -> Markup:
    """Horizontal bars, one per (label, count), the count written at the end of each bar."""
    label_w, row_h, top = 190, 22, 8
    height = top * 2 + row_h * max(len(items), 1)
    biggest = max((v for _, v in items), default=0) or 1
    room = width - label_w - 50
    out = _open(chart_id, width, height, title, _describe(items))
    out.append(f"<g {FONT}>")
    if not items:
        out.append(f'<text x="{label_w}" y="{top + 15}">No alerts in this period</text>')
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = round(room * value / biggest)
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{_x(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 6}" fill="{BAR_COLOUR}"/>')
        out.append(f'<text x="{label_w + w + 6}" y="{y + 15}">{value}</text>')
    out.append("</g></svg>")
    return Markup("".join(out))


def trend_chart(chart_id: str, title: str, points: Sequence[tuple[str, int, int]], width: int = 560) -> Markup:
    """Two lines over weeks: all counted alerts and the high-severity ones, each point labelled with its count."""
    left, right, top, bottom = 40, 20, 24, 40
    height = 220
    plot_w, plot_h = width - left - right, height - top - bottom
    biggest = max((t for _, t, _ in points), default=0) or 1
    step = plot_w / max(len(points) - 1, 1)

    def xy(i: int, value: int) -> tuple[float, float]:
        return round(left + i * step, 1), round(top + plot_h - plot_h * value / biggest, 1)

    desc = "; ".join(f"week of {label}: {total} alerts, {high} high severity" for label, total, high in points)
    out = _open(chart_id, width, height, title, desc or "no weeks in this period")
    out.append(f"<g {FONT}>")
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>')
    for series, colour, dash in ((1, BAR_COLOUR, ""), (2, HIGH_COLOUR, ' stroke-dasharray="5 3"')):
        coords = " ".join(f"{x},{y}" for x, y in (xy(i, p[series]) for i, p in enumerate(points)))
        if len(points) > 1:
            out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for i, p in enumerate(points):
            x, y = xy(i, p[series])
            out.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
            if series == 1:
                out.append(f'<text x="{x}" y="{y - 7}" text-anchor="middle">{p[1]}</text>')
    every = max(1, -(-len(points) // 8))  # at most eight date labels, so they never overlap
    for i, p in enumerate(points):
        if i % every == 0:
            x, _ = xy(i, 0)
            out.append(f'<text x="{x}" y="{top + plot_h + 16}" text-anchor="middle">{_x(p[0])}</text>')
    legend_y = height - 6
    out.append(f'<rect x="{left}" y="{legend_y - 9}" width="12" height="4" fill="{BAR_COLOUR}"/>'
               f'<text x="{left + 16}" y="{legend_y}">All alerts</text>'
               f'<rect x="{left + 110}" y="{legend_y - 9}" width="12" height="4" fill="{HIGH_COLOUR}"/>'
               f'<text x="{left + 126}" y="{legend_y}">High severity (4-5)</text>')
    out.append("</g></svg>")
    return Markup("".join(out))


def severity_stack(chart_id: str, title: str, rows: Sequence[tuple[str, Mapping[int, int]]],
                   labels: Mapping[int, str], width: int = 560) -> Markup:
    """One horizontal bar per row (a site, or the whole school), split by severity, each segment counted."""
    label_w, row_h, top = 140, 28, 8
    legend_h = 22
    height = top + row_h * max(len(rows), 1) + legend_h + 8
    biggest = max((sum(r.values()) for _, r in rows), default=0) or 1
    room = width - label_w - 50
    desc = "; ".join(f"{name}: " + ", ".join(f"{labels.get(s, s)} {n}" for s, n in sorted(r.items()) if n)
                     for name, r in rows)
    out = _open(chart_id, width, height, title, desc or "nothing to show")
    out.append(f"<g {FONT}>")
    for i, (name, by_severity) in enumerate(rows):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end">{_x(name)}</text>')
        x = label_w
        for severity in sorted(by_severity):
            n = by_severity[severity]
            if not n:
                continue
            w = room * n / biggest
            colour = SEVERITY_COLOURS.get(severity, SEVERITY_COLOURS[0])
            ink = "#fff" if severity >= 4 else "#000"
            out.append(f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{colour}" '
                       f'stroke="#fff"><title>{_x(labels.get(severity, severity))}: {n}</title></rect>')
            if w >= 14:
                out.append(f'<text x="{x + w / 2:.1f}" y="{y + 18}" text-anchor="middle" fill="{ink}">{n}</text>')
            x += w
        out.append(f'<text x="{x + 6:.1f}" y="{y + 18}">{sum(by_severity.values())}</text>')
    legend_y = top + row_h * max(len(rows), 1) + 14
    x = label_w
    for severity in sorted(labels):
        out.append(f'<rect x="{x}" y="{legend_y - 10}" width="10" height="10" '
                   f'fill="{SEVERITY_COLOURS.get(severity, SEVERITY_COLOURS[0])}"/>'
                   f'<text x="{x + 14}" y="{legend_y}">{severity}</text>')
        x += 34
    out.append(f'<text x="{x + 4}" y="{legend_y}">severity</text>')
    out.append("</g></svg>")
    return Markup("".join(out))
