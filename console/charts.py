"""Bar charts as inline SVG, drawn on the server: pure functions from numbers to markup.

The console sends no script and its CSP refuses inline styles, so a chart is SVG elements and
presentation attributes only (x=, height=, fill=). Every label is escaped (it is text of ours today,
but a status Pluggy invents tomorrow must not become markup), and every chart carries its own text
alternative: a <title> and a <desc> naming what it shows, and a <title> on each bar with its figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 720
PLOT_HEIGHT = 150
LEFT = 44  # room for the y axis's figures
RIGHT = 8
BOTTOM = 22  # room for the x axis's labels
LEGEND_ROW = 16
GAP = 0.2  # of each column's width, left between bars
ACCENT = "#0b5cad"


@dataclass(frozen=True)
class Series:
    """One kind of count in a chart: its name (the legend's and the tooltips') and its colour."""

    name: str
    color: str = ACCENT


def bar_chart(
    bars: Sequence[tuple[str, int]], *, chart_id: str, title: str, description: str, unit: str, label_every: int = 1
) -> Markup:
    """One bar per (label, value), e.g. webhooks per minute."""
    series = Series(unit)
    return stacked_bar_chart(
        [(label, {unit: value}) for label, value in bars],
        [series],
        chart_id=chart_id,
        title=title,
        description=description,
        label_every=label_every,
        legend=False,
    )


def stacked_bar_chart(
    columns: Sequence[tuple[str, Mapping[str, int]]],
    series: Sequence[Series],
    *,
    chart_id: str,
    title: str,
    description: str,
    label_every: int = 1,
    legend: bool = True,
) -> Markup:
    """One column per (label, {series name: value}), its series stacked in the order given; a legend
    above the plot names the series. A column's label is written under every `label_every`th one."""
    legend_rows = legend_layout(series) if legend else []
    top = (max((row for row, _, _ in legend_rows), default=-1) + 1) * LEGEND_ROW + 10
    height = top + PLOT_HEIGHT + BOTTOM
    ceiling = nice_ceiling(max((sum(values.values()) for _, values in columns), default=0))
    parts = [
        Markup(
            '<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{id}" viewBox="0 0 {w} {h}" '
            'width="{w}" height="{h}" role="img" aria-labelledby="{id}-title {id}-desc">'
            '<title id="{id}-title">{title}</title><desc id="{id}-desc">{description}</desc>'
        ).format(id=chart_id, w=WIDTH, h=height, title=title, description=description),
        *legend_marks(legend_rows),
        *axis_marks(ceiling, top),
        *column_marks(columns, series, ceiling, top, label_every),
        Markup("</svg>"),
    ]
    return Markup("").join(parts)


def legend_layout(series: Sequence[Series]) -> list[tuple[int, float, Series]]:
    """(row, x, series) for each legend entry, wrapped to the chart's width."""
    placed, row, x = [], 0, float(LEFT)
    for one in series:
        width = 14 + 7 * len(one.name) + 14
        if x + width > WIDTH - RIGHT and x > LEFT:
            row, x = row + 1, float(LEFT)
        placed.append((row, x, one))
        x += width
    return placed


def legend_marks(rows: list[tuple[int, float, Series]]) -> list[Markup]:
    return [
        Markup('<g class="legend"><rect x="{x}" y="{y}" width="10" height="10" fill="{color}"/>').format(
            x=number(x), y=row * LEGEND_ROW + 2, color=one.color
        )
        + Markup('<text x="{x}" y="{y}">{name}</text></g>').format(
            x=number(x + 14), y=row * LEGEND_ROW + 11, name=one.name
        )
        for row, x, one in rows
    ]


def axis_marks(ceiling: int, top: int) -> list[Markup]:
    """Gridlines at zero, half and the ceiling, with their figures."""
    marks = []
    for value in sorted({0, ceiling // 2, ceiling}):
        y = top + PLOT_HEIGHT - PLOT_HEIGHT * value / ceiling
        marks.append(
            Markup(
                '<line class="grid" x1="{left}" x2="{right}" y1="{y}" y2="{y}" stroke="#d9dee3"/>'
                '<text class="axis" x="{label_x}" y="{label_y}" text-anchor="end">{value}</text>'
            ).format(
                left=LEFT,
                right=WIDTH - RIGHT,
                y=number(y),
                label_x=LEFT - 4,
                label_y=number(y + 4),
                value=f"{value:,}",
            )
        )
    return marks


def column_marks(
    columns: Sequence[tuple[str, Mapping[str, int]]], series: Sequence[Series], ceiling: int, top: int, label_every: int
) -> list[Markup]:
    marks: list[Markup] = []
    step = (WIDTH - LEFT - RIGHT) / max(len(columns), 1)
    base = top + PLOT_HEIGHT
    width = number(step * (1 - GAP))
    for index, (label, values) in enumerate(columns):
        x, y = LEFT + index * step + step * GAP / 2, float(base)
        for one in series:
            value = values.get(one.name, 0)
            if value <= 0:
                continue
            bar = PLOT_HEIGHT * value / ceiling
            y -= bar
            # Built with escape() rather than Markup.format: hundreds of bars, and format costs more.
            marks.append(
                Markup(
                    f'<rect class="mark" x="{number(x)}" y="{number(y)}" width="{width}" height="{number(bar)}" '
                    f'fill="{escape(one.color)}"><title>{escape(label)}: {value:,} {escape(one.name)}</title></rect>'
                )
            )
        if index % label_every == 0:
            marks.append(
                Markup('<text class="axis" x="{x}" y="{y}">{label}</text>').format(
                    x=number(LEFT + index * step), y=base + 15, label=label
                )
            )
    return marks


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... at or above `value`: the y axis's top."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def number(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")
