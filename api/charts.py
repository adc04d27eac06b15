"""Charts as SVG drawn on the server: no script, no library, nothing from another origin. Each
chart is an image with a title for screen readers; its numbers are in a table beside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

COLOURS = {"Permit": "#1b6e2d", "Deny": "#b3261e"}  # 4.5:1 or more on white
BAR = "#0b57d0"
WIDTH, HEIGHT, AXIS = 640, 180, 36


def stacked_bars(series: Sequence[dict[str, Any]], keys: Sequence[str], *, title: str) -> Markup:
    """One bar per entry of `series`, its `keys` stacked, bottom first."""
    top = max((sum(int(row.get(k, 0)) for k in keys) for row in series), default=0)
    plot_w, plot_h = WIDTH - AXIS - 4, HEIGHT - 24
    slot = plot_w / max(1, len(series))
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" preserveAspectRatio="none">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{AXIS}" y1="{plot_h}" x2="{WIDTH}" y2="{plot_h}" stroke="#555"/>',
             f'<text x="{AXIS - 4}" y="12" text-anchor="end" class="axis">{top}</text>',
             f'<text x="{AXIS - 4}" y="{plot_h}" text-anchor="end" class="axis">0</text>']
    for index, row in enumerate(series):
        base = plot_h
        for key in keys:
            value = int(row.get(key, 0))
            if not value or not top:
                continue
            height = value / top * (plot_h - 8)
            base -= height
            parts.append(
                f'<rect x="{AXIS + index * slot + slot * 0.1:.1f}" y="{base:.1f}" '
                f'width="{max(1.0, slot * 0.8):.1f}" height="{height:.1f}" '
                f'fill="{COLOURS.get(key, BAR)}"><title>{escape(str(row.get("at", "")))} '
                f'{escape(key)}: {value}</title></rect>')
    if series:
        parts.append(f'<text x="{AXIS}" y="{HEIGHT - 6}" class="axis">'
                     f'{escape(_clock(series[0].get("at")))}</text>')
        parts.append(f'<text x="{WIDTH - 2}" y="{HEIGHT - 6}" text-anchor="end" class="axis">'
                     f'{escape(_clock(series[-1].get("at")))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def horizontal_bars(items: Sequence[tuple[str, int]], *, title: str) -> Markup:
    """One labelled bar per item, longest first as given."""
    if not items:
        return Markup(f'<p class="empty">{escape(title)}: nothing in this window.</p>')
    # Drawn at its own size (the labels' width, bars of 180 px), shrunk only on a narrow screen.
    row_h, bar_w = 26, 180
    labels = [label[:48] for label, _ in items]
    label_w = 12 + 7 * max(len(label) for label in labels)
    width_all = label_w + bar_w + 50
    height = row_h * len(items) + 4
    top = max(value for _, value in items) or 1
    parts = [f'<svg class="chart bars" viewBox="0 0 {width_all} {height}" width="{width_all}" '
             f'role="img" aria-label="{escape(title)}">', f"<title>{escape(title)}</title>"]
    for index, ((_, value), label) in enumerate(zip(items, labels, strict=True)):
        y = index * row_h + 2
        width = value / top * bar_w
        parts.append(f'<text x="{label_w - 6}" y="{y + 17}" text-anchor="end" class="label">'
                     f"{escape(label)}</text>")
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(1.0, width):.1f}" '
                     f'height="{row_h - 8}" fill="{BAR}"/>')
        parts.append(f'<text x="{label_w + width + 6:.1f}" y="{y + 17}" class="label">'
                     f"{value}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _clock(at: Any) -> str:
    """"2026-12-04T20:15:00Z" as "12-04 20:15 UTC"."""
    text = str(at or "")
    return f"{text[5:10]} {text[11:16]} UTC" if len(text) >= 16 else text
