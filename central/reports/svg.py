"""Small inline SVG charts (horizontal bars, a ratio gauge) for the report page; no JavaScript, no build step.

Pure functions returning markup strings (escaped); any thread.
"""

from __future__ import annotations

from html import escape

BAR_COLOURS = ("#2f6fb0", "#c0392b", "#d68910", "#1e8449", "#7d3c98")


def bars(values: dict[str, int], *, width: int = 360, bar_height: int = 22, label_width: int = 110) -> str:
    biggest = max(values.values(), default=0) or 1
    height = bar_height * max(1, len(values)) + 8
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    usable = width - label_width - 50
    for i, (label, value) in enumerate(values.items()):
        y = 4 + i * bar_height
        w = round(usable * value / biggest)
        colour = BAR_COLOURS[i % len(BAR_COLOURS)]
        parts.append(
            f'<text x="0" y="{y + bar_height * 0.7:.0f}" font-size="13">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{w}" height="{bar_height - 6}" fill="{colour}" rx="2"/>'
            f'<text x="{label_width + w + 6}" y="{y + bar_height * 0.7:.0f}" font-size="13">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def gauge(percent: float | None, *, width: int = 360, height: int = 26) -> str:
    label = "no data" if percent is None else f"{percent:.1f}%"
    fill = 0 if percent is None else round((width - 70) * percent / 100)
    colour = "#1e8449" if (percent or 0) >= 90 else "#d68910" if (percent or 0) >= 70 else "#c0392b"
    return (
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<rect x="0" y="4" width="{width - 70}" height="{height - 8}" fill="#e5e8ec" rx="3"/>'
        f'<rect x="0" y="4" width="{fill}" height="{height - 8}" fill="{colour}" rx="3"/>'
        f'<text x="{width - 62}" y="{height - 8}" font-size="13">{escape(label)}</text></svg>'
    )
