"""Point labels that do not print over each other: points that fall together share one label.

Two runs can land on the same spot of a scatter (LoRA at two ranks after a short run, λ values
that scaled nothing); labelled one by one their names print on top of each other. The points
are grouped instead: a point joins the first group whose first point lies within ``frac`` of
the axis spans in both x and y, and each group gets one label, its names joined by ``", "``
(:func:`merge_close`); :func:`annotate_apart` then puts each label where it overlaps none
placed before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.text import Text

__all__ = ["OFFSETS", "annotate_apart", "merge_close"]


def merge_close(points: Sequence[tuple[float, float, str]], frac: float = 0.02,
                spans: tuple[float, float] | None = None
                ) -> list[tuple[float, float, list[str]]]:
    """``[(x, y, [names])]``: ``points`` ``(x, y, name)`` grouped where they lie within
    ``frac × span`` of a group's first point in both coordinates, in first-seen order.
    ``spans``: the axes' ``(x, y)`` extents (e.g. from ``ax.get_xlim()``, when other data
    share the axes); default the points' own (a zero span groups only equal values)."""
    if not points:
        return []
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span_x, span_y = spans or (max(xs) - min(xs), max(ys) - min(ys))
    tol_x, tol_y = frac * abs(span_x), frac * abs(span_y)
    groups: list[tuple[float, float, list[str]]] = []
    for x, y, name in points:
        for gx, gy, names in groups:
            if abs(x - gx) <= tol_x and abs(y - gy) <= tol_y:
                names.append(name)
                break
        else:
            groups.append((x, y, [name]))
    return groups


# Offsets (points) tried in turn for a label: right of the point above, below, then left.
OFFSETS: tuple[tuple[int, int], ...] = ((3, 3), (3, -10), (-3, 3), (-3, -10), (3, 12),
                                        (3, -19), (-3, 12), (-3, -19))


def annotate_apart(ax: Axes, points: Sequence[tuple[float, float, str]], fontsize: float = 7,
                   frac: float = 0.02) -> list[Text]:
    """Label ``points`` ``(x, y, name)`` on ``ax`` so that no two labels overlap where a free
    spot exists: points that fall together share one label (:func:`merge_close`); each label
    takes the first of :data:`OFFSETS` whose box (measured by the figure's renderer) overlaps
    no label placed before it and stays inside the axes, else the first offset."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    spans = (float(abs(ax.get_xlim()[1] - ax.get_xlim()[0])),
             float(abs(ax.get_ylim()[1] - ax.get_ylim()[0])))
    inside = ax.get_window_extent(renderer)
    placed: list[Text] = []
    boxes = []
    for x, y, names in merge_close(points, frac, spans):
        text = ", ".join(names)
        chosen = None
        for dx, dy in OFFSETS:
            ann = ax.annotate(text, (x, y), fontsize=fontsize, xytext=(dx, dy),
                              textcoords="offset points", ha="left" if dx >= 0 else "right")
            box = ann.get_window_extent(renderer)
            free = not any(box.overlaps(b) for b in boxes)
            if free and inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1):
                chosen = (ann, box)
                break
            ann.remove()
        if chosen is None:
            ann = ax.annotate(text, (x, y), fontsize=fontsize, xytext=OFFSETS[0],
                              textcoords="offset points")
            chosen = (ann, ann.get_window_extent(renderer))
        placed.append(chosen[0])
        boxes.append(chosen[1])
    return placed
