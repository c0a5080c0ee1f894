"""Charts drawn on the server as SVG: horizontal bars of a dimension and a line over time.

Pure functions from labelled values to a standalone SVG document (no script, no style
element or attribute: presentation attributes only, so a page's CSP allows it inline). Every
text is escaped; each chart has a ``<title>`` and a ``<desc>`` that says what it shows, and each
bar or point its own ``<title>`` (the tooltip), for screen readers and for a pointer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Final

__all__ = ["Bar", "Point", "bar_chart", "line_chart", "nice_ticks"]

_FONT: Final = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
_INK: Final = "#1b2430"
_MUTED: Final = "#5f6b7a"
_GRID: Final = "#dde3ea"
_BAR: Final = "#1769aa"
_ALERT: Final = "#b42318"
# Characters XML 1.0 does not allow in a document, even escaped.
_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ID: Final = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: float
    #: The value as written at the bar's end ("12 · 4.1 %").
    text: str
    #: The tooltip; the label and text when None.
    title: str | None = None
    #: Drawn in the alert colour (a subject over a threshold).
    alert: bool = False


@dataclass(frozen=True, slots=True)
class Point:
    label: str
    value: float | None  # None: no figure for this period (a gap in the line)
    text: str


def _t(text: str) -> str:
    return escape(_NOT_XML.sub("", text), quote=True)


def _ident(text: str) -> str:
    return _ID.sub("-", text)[:60] or "chart"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2, 2.5 or 5 × 10^n)."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < top - 1e-12:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"


def _open(ident: str, width: int, height: int, title: str, desc: str) -> list[str]:
    return [
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-labelledby="{ident}-title {ident}-desc"'
        f' font-family="{_t(_FONT)}" font-size="12" fill="{_INK}">',
        f'<title id="{ident}-title">{_t(title)}</title>',
        f'<desc id="{ident}-desc">{_t(desc)}</desc>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="12" y="22" font-size="14" font-weight="600">{_t(title)}</text>',
    ]


def bar_chart(
    title: str,
    bars: Sequence[Bar],
    *,
    subtitle: str = "",
    axis: Callable[[float], str] = _number,
    ident: str = "bars",
    width: int = 640,
    empty: str = "No returns in this slice.",
) -> str:
    """Horizontal bars, one per label in the order given, longest value to scale, with a
    value axis (``axis`` writes its ticks) and each bar's text at its end."""
    ident = _ident(ident)
    label_w = min(220, max(60, 7 * max((len(_short(b.label, 30)) for b in bars), default=8)))
    row_h, top, bottom = 26, 48 if subtitle else 36, 30
    height = top + max(1, len(bars)) * row_h + bottom
    if bars:
        best = max(bars, key=lambda bar: bar.value)
        desc = f"{len(bars)} bars. Highest: {best.label}, {best.text}."
    else:
        desc = empty
    parts = _open(ident, width, height, title, f"{subtitle}. {desc}" if subtitle else desc)
    if subtitle:
        parts.append(f'<text x="12" y="38" fill="{_MUTED}">{_t(subtitle)}</text>')
    if not bars:
        parts.append(f'<text x="12" y="{top + 18}" fill="{_MUTED}">{_t(empty)}</text></svg>')
        return "".join(parts)
    # Room at the right for the longest bar's text (about 6.5 px a character at 12 px).
    x0 = 12 + label_w + 8
    x1 = width - min(width // 3, 16 + round(6.5 * max(len(bar.text) for bar in bars)))
    ticks = nice_ticks(max(bar.value for bar in bars))
    scale = (x1 - x0) / ticks[-1] if ticks[-1] else 0.0
    axis_y = top + len(bars) * row_h
    parts.append('<g aria-hidden="true">')
    for tick in ticks:
        x = x0 + tick * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{axis_y}" stroke="{_GRID}"/>'
            f'<text x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle" fill="{_MUTED}"'
            f' font-size="11">{_t(axis(tick))}</text>'
        )
    parts.append("</g>")
    for index, bar in enumerate(bars):
        y = top + index * row_h
        w = max(0.0, bar.value * scale)
        tip = bar.title or f"{bar.label}: {bar.text}"
        parts.append(
            f'<g class="bar"><title>{_t(tip)}</title>'
            f'<text x="{12 + label_w}" y="{y + 17}" text-anchor="end">'
            f"{_t(_short(bar.label, 30))}</text>"
            f'<rect x="{x0}" y="{y + 5}" width="{w:.1f}" height="{row_h - 10}" rx="3"'
            f' fill="{_ALERT if bar.alert else _BAR}"/>'
            f'<text x="{x0 + w + 6:.1f}" y="{y + 17}" fill="{_MUTED}">{_t(bar.text)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    title: str,
    points: Sequence[Point],
    *,
    subtitle: str = "",
    axis: Callable[[float], str] = _number,
    ident: str = "line",
    width: int = 640,
    height: int = 280,
    empty: str = "No returns in this slice.",
) -> str:
    """A line through the points in order (a gap where a value is None), with a value axis,
    a label under every few points and each point's text in its tooltip."""
    ident = _ident(ident)
    values = [point.value for point in points if point.value is not None]
    if values:
        best = max((p for p in points if p.value is not None), key=lambda p: p.value or 0.0)
        desc = (
            f"{len(points)} points from {points[0].label} to {points[-1].label}. "
            f"Highest: {best.label}, {best.text}."
        )
    else:
        desc = empty
    parts = _open(ident, width, height, title, f"{subtitle}. {desc}" if subtitle else desc)
    top = 48 if subtitle else 36
    if subtitle:
        parts.append(f'<text x="12" y="38" fill="{_MUTED}">{_t(subtitle)}</text>')
    if not values:
        parts.append(f'<text x="12" y="{top + 18}" fill="{_MUTED}">{_t(empty)}</text></svg>')
        return "".join(parts)
    x0, x1, y0, y1 = 64, width - 16, height - 40, top + 8
    ticks = nice_ticks(max(values))
    scale = (y0 - y1) / ticks[-1] if ticks[-1] else 0.0
    step = (x1 - x0) / max(1, len(points) - 1)
    parts.append('<g aria-hidden="true">')
    for tick in ticks:
        y = y0 - tick * scale
        parts.append(
            f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="{_GRID}"/>'
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{_MUTED}"'
            f' font-size="11">{_t(axis(tick))}</text>'
        )
    every = max(1, math.ceil(len(points) / 8))
    for index, point in enumerate(points):
        last = index == len(points) - 1
        if (index % every == 0 and len(points) - 1 - index >= every / 2) or last:
            x = x0 + index * step
            anchor = "end" if last and index else "middle"
            parts.append(
                f'<text x="{x:.1f}" y="{y0 + 18}" text-anchor="{anchor}" fill="{_MUTED}"'
                f' font-size="11">{_t(point.label)}</text>'
            )
    parts.append("</g>")
    runs: list[list[str]] = [[]]
    for index, point in enumerate(points):
        if point.value is None:
            runs.append([])
            continue
        runs[-1].append(f"{x0 + index * step:.1f},{y0 - point.value * scale:.1f}")
    for run in runs:
        if len(run) > 1:
            parts.append(
                f'<polyline points="{" ".join(run)}" fill="none" stroke="{_BAR}"'
                ' stroke-width="2" stroke-linejoin="round"/>'
            )
    for index, point in enumerate(points):
        if point.value is None:
            continue
        x, y = x0 + index * step, y0 - point.value * scale
        parts.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{_BAR}">'
            f"<title>{_t(f'{point.label}: {point.text}')}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
