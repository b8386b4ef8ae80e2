"""Charts as SVG drawn on the server: horizontal bars and lines over days with a threshold. Each is an image with a
title and a text alternative (role="img", aria-label); the pages show the same figures in a table beside it.
Every text that goes into the markup is escaped here."""
from __future__ import annotations

from datetime import date
from html import escape

from markupsafe import Markup

PALETTE = ("#0969da", "#8250df", "#1a7f37", "#bf3989", "#9a6700", "#cf222e", "#0a3069", "#57606a")
FONT = 11


def _width(text: str) -> int:
    """About how many pixels `text` takes at FONT size: Chinese characters are twice as wide as Latin ones."""
    import unicodedata

    return sum(FONT if unicodedata.east_asian_width(c) in ("W", "F") else FONT * 0.6 for c in text).__ceil__()


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
                  f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>{"".join(body)}</svg>')


def bars(items: list[tuple[str, float]], label: str, *, width: int = 560, fmt: str = "{:g}") -> Markup:
    """One horizontal bar per (name, value), labelled with both."""
    row, left, right = 24, min(180, 12 + max((_width(n) for n, _ in items), default=28)), 56
    height = max(row * len(items) + 8, 32)
    top = max((v for _, v in items), default=0) or 1
    span = width - left - right
    body = []
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        w = max(0.0, span * value / top)
        body.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{escape(name)}</text>'
                    f'<rect class="bar" x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" rx="2"/>'
                    f'<text x="{left + w + 4:.1f}" y="{y + 15}">{escape(fmt.format(value))}</text>')
    return _svg(width, height, label, body)


def lines(series: dict[str, list[tuple[date, float]]], days: list[date], label: str, *, threshold: float | None = None,
          top: float = 100.0, width: int = 640, height: int = 220) -> tuple[Markup, list[tuple[str, str]]]:
    """One line per series over `days` (a gap where a day has no value), a dashed threshold line; returns the chart and
    its legend (name, colour)."""
    left, right, up, down = 34, 10, 10, 24
    w, h = width - left - right, height - up - down
    n = max(len(days) - 1, 1)
    x = {d: left + w * i / n for i, d in enumerate(days)}
    y = lambda v: up + h * (1 - min(max(v, 0.0), top) / top)
    body = []
    for tick in (0, 25, 50, 75, 100):
        value = top * tick / 100
        body.append(f'<line class="grid" x1="{left}" x2="{left + w}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
                    f'<text x="{left - 4}" y="{y(value) + 4:.1f}" text-anchor="end">{value:g}</text>')
    step = max(1, len(days) // 6)
    for i, d in enumerate(days):
        if i % step == 0 or i == len(days) - 1:
            body.append(f'<text x="{x[d]:.1f}" y="{height - 6}" text-anchor="middle">{d.month}/{d.day}</text>')
    if threshold is not None:
        body.append(f'<line class="threshold" x1="{left}" x2="{left + w}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}"/>')
    legend = []
    for k, (name, points) in enumerate(sorted(series.items())):
        colour = PALETTE[k % len(PALETTE)]
        legend.append((name, colour))
        values = {d: v for d, v in points}
        path, pen = [], "M"
        for d in days:
            if d not in values:
                pen = "M"
                continue
            path.append(f"{pen}{x[d]:.1f},{y(values[d]):.1f}")
            pen = "L"
            if values[d] < (threshold if threshold is not None else -1):
                body.append(f'<circle cx="{x[d]:.1f}" cy="{y(values[d]):.1f}" r="3" fill="{colour}"/>')
        if path:
            body.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2"><title>{escape(name)}</title></path>')
    return _svg(width, height, label, body), legend
