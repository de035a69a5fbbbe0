"""Small charts drawn on the server as inline SVG: no scripts, no external files."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

# Colours that stay distinct for the common kinds of colour blindness.
PALETTE = ("#1b6ca8", "#2e7d32", "#e0a800", "#b3261e", "#6a4c93", "#555555")


def _nice_max(value: float) -> float:
    """A round upper bound for an axis (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def bar_chart(
    title: str, data: Sequence[tuple[str, float]], *, width: int = 560, unit: str = ""
) -> Markup:
    """Horizontal bars, one per (label, value), with the values written at their ends."""
    row, left, right = 26, 120, 60
    height = row * max(len(data), 1) + 30
    top = _nice_max(max((value for _, value in data), default=0))
    span = width - left - right
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for index, (label, value) in enumerate(data):
        y = 10 + index * row
        length = span * (value / top) if top else 0
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end" font-size="13">'
            f"{escape(label)}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" '
            f'fill="{colour}"><title>{escape(label)}: {value:g}{escape(unit)}</title></rect>'
            f'<text x="{left + length + 6:.1f}" y="{y + 15}" font-size="13">'
            f"{value:g}{escape(unit)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(
    title: str, points: Sequence[tuple[str, float]], *, width: int = 560, height: int = 200
) -> Markup:
    """A line over evenly spaced points, with the first, last and highest values labelled."""
    left, right, top_pad, bottom = 40, 16, 14, 26
    top = _nice_max(max((value for _, value in points), default=0))
    inner_w, inner_h = width - left - right, height - top_pad - bottom
    step = inner_w / max(len(points) - 1, 1)

    def xy(index: int, value: float) -> tuple[float, float]:
        return left + index * step, top_pad + inner_h * (1 - (value / top if top else 0))

    coords = [xy(index, value) for index, (_, value) in enumerate(points)]
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<line x1="{left}" y1="{top_pad + inner_h}" x2="{width - right}" '
        f'y2="{top_pad + inner_h}" stroke="#999"/>',
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end" font-size="11">{top:g}</text>',
        f'<text x="{left - 6}" y="{top_pad + inner_h}" text-anchor="end" font-size="11">0</text>',
    ]
    if coords:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>'
        )
        for (label, value), (x, y) in zip(points, coords, strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{PALETTE[0]}">'
                f"<title>{escape(label)}: {value:g}</title></circle>"
            )
        for index in sorted({0, len(points) - 1}):
            label, _ = points[index]
            anchor = "start" if index == 0 else "end"
            parts.append(
                f'<text x="{coords[index][0]:.1f}" y="{height - 8}" font-size="11" '
                f'text-anchor="{anchor}">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_columns(
    title: str,
    columns: Sequence[tuple[str, Sequence[float]]],
    series: Sequence[str],
    *,
    width: int = 560,
    height: int = 220,
) -> Markup:
    """Columns split by series (e.g. delivered / failed / bounced per edition), with a legend."""
    left, right, top_pad, bottom = 40, 10, 28, 30
    top = _nice_max(max((sum(values) for _, values in columns), default=0))
    inner_w, inner_h = width - left - right, height - top_pad - bottom
    slot = inner_w / max(len(columns), 1)
    bar = max(min(slot * 0.7, 40), 2)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end" font-size="11">{top:g}</text>',
    ]
    for index, name in enumerate(series):
        x: float = left + index * 110
        parts.append(
            f'<rect x="{x}" y="4" width="10" height="10" '
            f'fill="{PALETTE[index % len(PALETTE)]}"/>'
            f'<text x="{x + 14}" y="13" font-size="11">{escape(name)}</text>'
        )
    for column, (label, values) in enumerate(columns):
        x = left + column * slot + (slot - bar) / 2
        base: float = top_pad + inner_h
        for index, value in enumerate(values):
            h = inner_h * (value / top) if top else 0
            base -= h
            if h > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                    f'fill="{PALETTE[index % len(PALETTE)]}"><title>{escape(label)} '
                    f"{escape(series[index])}: {value:g}</title></rect>"
                )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{height - 10}" font-size="10" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
