"""Every figure in one style, drawn headless.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, never
through ``pyplot``: no display is needed, no backend warning appears, nothing global is left
open, and the import is cheaper. Each ``loralab.plots.<topic>`` module draws the figures of
one topic; this module holds the shared style and the atomic figure writer (PNG, PDF or
SVG, as the file's suffix says).

Chinese labels: :func:`cjk_font` finds a CJK font when one is installed (Debian's
``fonts-wqy-microhei`` or ``fonts-noto-cjk``); callers fall back to English without one.
"""

from __future__ import annotations

import functools
import io
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["COLORS", "CJK_FONT_HINT", "FIGURE_FORMATS", "check_figure_path", "cjk_font",
           "figure_bytes", "new_figure", "png_bytes", "save_figure", "save_png"]

# One colour per meaning, used by every figure.
COLORS: dict[str, str] = {
    "seed": "#d95f02",      # the seed's random BA perturbation, ||ΔW||_F
    "theory": "#333333",    # closed-form expectations (dashed)
    "optimal": "#1b9e77",   # Eckart–Young optimum (truncated SVD)
    "learned": "#7570b3",   # gradient-descent LoRA fit
    "full": "#e7298a",      # full fine-tuning
    "lora": "#1f78b4",      # LoRA fine-tuning
    "base": "#999999",      # the frozen base model
}

CJK_FONT_HINT = ("no CJK font found: figure labels stay English "
                 "(install one with: apt-get install fonts-wqy-microhei)")

_STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "figure.dpi": 100,
}

_CJK_CANDIDATES = (
    "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC",
    "Source Han Sans SC", "SimHei", "Microsoft YaHei", "PingFang SC",
)


@functools.cache
def cjk_font() -> str | None:
    """Name of an installed font that can draw Chinese, or ``None``.

    Matplotlib's font cache can predate a font installed later (``make browser`` installs
    one), so when the cache knows none, the system font folders are scanned once.
    """
    from matplotlib import font_manager

    def known() -> str | None:
        names = {f.name for f in font_manager.fontManager.ttflist}
        return next((n for n in _CJK_CANDIDATES if n in names), None)

    if (found := known()) is not None:
        return found
    for path in font_manager.findSystemFonts():
        if any(key in path.lower() for key in ("wqy", "wenquanyi", "notosanscjk", "cjk")):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue
    return known()


def new_figure(width: float = 7.0, height: float = 4.5, *, cjk: bool = False,
               layout: str | None = "constrained") -> Figure:
    """A blank Agg-backed figure in the house style (``cjk=True`` picks a Chinese font).

    ``layout=None`` skips constrained layout (which costs a few hundred ms per figure); the
    caller then places the axes with ``fig.subplots_adjust``.
    """
    import matplotlib

    os.environ.setdefault("MPLBACKEND", "Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matplotlib.rcParams.update(_STYLE)
    font = cjk_font() if cjk else None
    # A list of families: glyphs the CJK font lacks (₀, ᵣ, …) fall back to DejaVu Sans.
    matplotlib.rcParams["font.family"] = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]
    matplotlib.rcParams["axes.unicode_minus"] = font is None
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """The figure encoded as PNG (used to embed figures in the HTML report).

    zlib level 1: about half the encoding time of the default level for a few % more bytes.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


# The formats a figure file may have, by suffix: Matplotlib's Agg canvas writes each natively.
FIGURE_FORMATS: dict[str, str] = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
# No creation date in the file: the same figure gives the same bytes.
_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


def check_figure_path(path: str | os.PathLike[str], flag: str = "--out") -> str:
    """The format ``path``'s suffix names (``png``, ``pdf`` or ``svg``); any other suffix
    raises :class:`~loralab.errors.LoralabError` before a figure is drawn, so a file never
    holds another format than its name says."""
    from ..errors import LoralabError

    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FIGURE_FORMATS:
        raise LoralabError(f"{flag} {os.fspath(path)!r}: a figure is written as PNG, PDF or "
                           f"SVG, chosen by the suffix; give a name ending in "
                           f"{', '.join(FIGURE_FORMATS)} (not {suffix or 'no suffix'!r})")
    return FIGURE_FORMATS[suffix]


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 100) -> bytes:
    """The figure encoded as ``fmt`` (``png``: :func:`png_bytes`; ``pdf``, ``svg``: vector)."""
    if fmt == "png":
        return png_bytes(fig, dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, metadata=_NO_DATE.get(fmt))
    return buf.getvalue()


def save_png(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> str:
    """Write the figure to ``path`` atomically (temp file, then rename), in the format its
    suffix names: PNG for ``.png``, PDF for ``.pdf``, SVG for ``.svg`` (any other suffix is
    refused, see :func:`check_figure_path`)."""
    from ..fileio import atomic_write

    data = figure_bytes(fig, check_figure_path(path, flag="figure"), dpi)
    return str(atomic_write(path, lambda fh: fh.write(data)))


save_figure = save_png
