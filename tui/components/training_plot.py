"""A live loss plot drawn with Unicode braille (2x4 dots a cell): no plotting dependency, and it
works over SSH in any terminal with a Unicode font.

:func:`plot` is a pure function (series in, rich ``Text`` lines out) so it is tested without a
terminal; :class:`LossPlot` is the widget that redraws it at its current size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.widget import Widget

BRAILLE = 0x2800
# dot bit of (column 0..1, row 0..3) in a braille cell (Unicode's dot numbering)
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
BLOCKS = " ▁▂▃▄▅▆▇█"
AXIS_W = 9  # the y labels' column


@dataclass
class Series:
    """One line of the plot: ``(x, y)`` points; non-finite values break the line."""

    name: str
    points: list[tuple[float, float]] = field(default_factory=list)
    style: str = "cyan"
    marker: bool = False  # eval points: also drawn as a 2x2 dot block, visible when few


def finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _ranges(
    series: Sequence[Series], log: bool
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    xs: list[float] = []
    ys: list[float] = []
    for s in series:
        for x, y in s.points:
            if finite(x) and finite(y) and (not log or y > 0):
                xs.append(x)
                ys.append(math.log10(y) if log else y)
    if not xs:
        return None
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:  # a flat line sits in the middle
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    return (x0, x1), (y0, y1)


def _segment(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """The dots of a straight line between two dots (Bresenham)."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err, out = dx + dy, []
    while True:
        out.append((x0, y0))
        if (x0, y0) == (x1, y1):
            return out
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


def canvas(
    series: Sequence[Series],
    width: int,
    height: int,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    log: bool = False,
) -> list[list[tuple[int, str]]]:
    """``height`` rows of ``width`` cells, each ``(dot bits, style)``: dot row 0 is the top."""
    grid = [[(0, "") for _ in range(width)] for _ in range(height)]
    (x0, x1), (y0, y1) = x_range, y_range
    dw, dh = width * 2, height * 4

    def dot(px: int, py: int, style: str) -> None:
        if 0 <= px < dw and 0 <= py < dh:
            cx, cy = px // 2, py // 4
            bits, _ = grid[cy][cx]
            grid[cy][cx] = (bits | _DOT[px % 2][py % 4], style)

    for s in series:
        prev: tuple[int, int] | None = None
        for x, y in s.points:
            if not (finite(x) and finite(y)) or (log and y <= 0):
                prev = None  # a gap, never a line through a NaN
                continue
            yv = math.log10(y) if log else y
            px = round((x - x0) / (x1 - x0) * (dw - 1))
            py = round((y1 - yv) / (y1 - y0) * (dh - 1))
            here = (px, py)
            for p in _segment(prev, here) if prev else [here]:
                dot(*p, s.style)
            if s.marker:
                for ddx, ddy in ((1, 0), (0, 1), (1, 1)):
                    dot(px + ddx, py + ddy, s.style)
            prev = here
    return grid


def _label(v: float, log: bool) -> str:
    v = 10**v if log else v
    return f"{v:.3g}"[: AXIS_W - 1].rjust(AXIS_W - 1) + "┤"


def plot(series: Sequence[Series], width: int, height: int, *, log: bool = False) -> list[Text]:
    """The plot as ``height`` lines of at most ``width`` cells: y labels, braille area, x axis.

    Empty or all-NaN data draws an empty frame saying so (never raises)."""
    width, height = max(width, AXIS_W + 4), max(height, 3)
    area_w, area_h = width - AXIS_W, height - 1
    ranges = _ranges(series, log)
    lines: list[Text] = []
    if ranges is None:
        for i in range(area_h):
            msg = "no data yet" if i == area_h // 2 else ""
            lines.append(Text(" " * (AXIS_W - 1) + "│" + msg.center(area_w)[:area_w]))
        lines.append(Text(" " * (AXIS_W - 1) + "└" + "─" * area_w))
        return lines
    (x0, x1), (y0, y1) = ranges
    grid = canvas(series, area_w, area_h, (x0, x1), (y0, y1), log)
    for i, row in enumerate(grid):
        if i == 0:
            line = Text(_label(y1, log), style="dim")
        elif i == area_h - 1:
            line = Text(_label(y0, log), style="dim")
        elif i == area_h // 2 and area_h > 4:
            line = Text(_label((y0 + y1) / 2, log), style="dim")
        else:
            line = Text(" " * (AXIS_W - 1) + "│", style="dim")
        for bits, style in row:
            line.append(chr(BRAILLE + bits) if bits else " ", style=style or None)
        lines.append(line)
    left, right = f"{x0:g}", f"{x1:g}"
    axis = " " * (AXIS_W - 1) + "└" + left + "─" * max(1, area_w - len(left) - len(right)) + right
    lines.append(Text(axis[:width], style="dim"))
    return lines


def sparkline(values: Sequence[float], width: int) -> str:
    """Block characters for ``values`` (the learning rate schedule), last ``width`` kept."""
    vals = [v for v in values if finite(v)][-max(width, 1) :]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    top = len(BLOCKS) - 1
    if hi == lo:
        return BLOCKS[top // 2] * len(vals)
    return "".join(BLOCKS[1 + round((v - lo) / (hi - lo) * (top - 1))] for v in vals)


class LossPlot(Widget):
    """Train loss, eval loss (markers) and the learning rate sparkline, redrawn on resize."""

    DEFAULT_CSS = "LossPlot { height: 1fr; min-height: 8; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.series: list[Series] = []
        self.lr: list[float] = []
        self.log_scale = False

    def set_data(self, series: list[Series], lr: list[float]) -> None:
        self.series, self.lr = series, lr
        self.refresh()

    def lines(self, width: int, height: int) -> list[Text]:
        """What the widget shows at ``width`` x ``height`` (the legend and lr take 2 lines)."""
        out = plot(self.series, width, max(height - 2, 3), log=self.log_scale)
        legend = Text(" " * AXIS_W)
        for s in self.series:
            legend.append("━━ " if not s.marker else "•• ", style=s.style)
            legend.append(f"{s.name}  ")
        if self.log_scale:
            legend.append("(log scale)", style="dim")
        lr_line = Text("       lr ", style="dim")
        if self.lr and finite(self.lr[-1]):
            spark = sparkline(self.lr, width - AXIS_W - 14)
            lr_line.append(spark, style="magenta")
            lr_line.append(f" {self.lr[-1]:.3g}")
        return [legend, *out, lr_line]

    def render(self) -> Text:
        w, h = self.size.width or 60, self.size.height or 12
        return Text("\n").join(self.lines(w, h))
