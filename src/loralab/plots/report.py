"""Figures drawn for the HTML report: the rank explorer's heatmaps, and Chinese labels for
figures drawn elsewhere.

:func:`rank_figure_pngs` draws, for each rank ``r``, two matrices beside their best rank-``r``
approximation and the residual, on a colour scale fixed across ranks (so moving the report's
slider changes only what the rank changes). :func:`localize_figure` rewrites the titles,
axis labels and legend entries of any figure through a translation table and gives them a
CJK font; strings not in the table stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import new_figure, png_bytes

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

__all__ = ["HeatmapRow", "localize_figure", "rank_figure_pngs"]

# (pattern, replacement): a whole-string regex match is replaced; groups may be reused.
Translation = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class HeatmapRow:
    """One row of a rank figure: a matrix crop, the same crop of its rank-r approximation.

    Attributes:
        full: ``(c, c)`` crop of the matrix ``M``.
        approx: ``(c, c)`` crop of ``M_r`` (best rank-r approximation of the whole ``M``).
        vmax: the colour scale's half-width; keep it the same for every rank.
        titles: the three panel titles (matrix, approximation, residual).
    """

    full: np.ndarray
    approx: np.ndarray
    vmax: float
    titles: tuple[str, str, str]


def rank_figure_pngs(frames: Sequence[Sequence[HeatmapRow]], suptitles: Sequence[str], *,
                     font: str | None = None, colorbar_label: str = "value",
                     dpi: int = 90) -> list[bytes]:
    """One PNG per frame (one frame per rank): a grid with one row per :class:`HeatmapRow`
    showing ``M``, ``M_r`` and ``M − M_r``.

    Every panel of a row shares the diverging scale ``[-vmax, vmax]``, so the residual's
    fading is visible; entries are drawn as blocks (``interpolation="nearest"``). The layout
    is computed once for the first frame and reused (only data and titles change), so every
    frame has the same geometry and the slider's image does not jump. ``font``: a CJK font
    for Chinese titles (DejaVu Sans stays the fallback for symbols such as ``₀``).
    """
    from matplotlib.text import Text

    first = frames[0]
    fig = new_figure(10.0, 3.1 * len(first) + 0.5, cjk=font is not None)
    axes = fig.subplots(len(first), 3, squeeze=False)
    images = []
    for ax_row, hm in zip(axes, first, strict=True):
        image = None
        for ax in ax_row:
            image = ax.imshow(hm.full, cmap="RdBu_r", vmin=-hm.vmax, vmax=hm.vmax,
                              interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.spines[:].set_visible(True)
            images.append(image)
        bar = fig.colorbar(image, ax=list(ax_row), shrink=0.9, pad=0.02)
        bar.set_label(colorbar_label)
    sup = fig.suptitle(suptitles[0], fontweight="normal" if font else "bold", fontsize=12)
    pngs = []
    for frame, suptitle in zip(frames, suptitles, strict=True):
        k = 0
        for ax_row, hm in zip(axes, frame, strict=True):
            for ax, mat, title in zip(ax_row, (hm.full, hm.approx, hm.full - hm.approx),
                                      hm.titles, strict=True):
                images[k].set_data(mat)
                ax.set_title(title, fontsize=11)
                k += 1
        sup.set_text(suptitle)
        if font:
            for text in fig.findobj(Text):
                text.set_fontfamily([font, "DejaVu Sans"])
        pngs.append(png_bytes(fig, dpi=dpi))
        fig.set_layout_engine("none")          # freeze the first frame's layout
    return pngs


def localize_figure(fig: Figure, table: Translation, font: str | None) -> int:
    """Translate every text of ``fig`` that fully matches a pattern of ``table``.

    With ``font`` (a CJK font name) every text of the figure gets ``[font, "DejaVu Sans"]``
    as its family and a regular weight (these fonts have no bold face), so Chinese labels
    passed in by the caller draw too. Returns how many texts were translated. The figure is
    changed in place.
    """
    from matplotlib.text import Text

    compiled = [(re.compile(p, re.DOTALL), rep) for p, rep in table]
    done = 0
    for text in fig.findobj(Text):
        old = text.get_text()
        if font:
            text.set_fontfamily([font, "DejaVu Sans"])
            text.set_fontweight("normal")
        if not old:
            continue
        for pattern, rep in compiled:
            match = pattern.fullmatch(old)
            if match:
                text.set_text(match.expand(rep))
                done += 1
                break
    return done
