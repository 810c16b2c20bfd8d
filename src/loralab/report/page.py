"""The report page from Jinja2 templates: ``templates/page.html.j2`` and one partial per
chapter, with autoescaping on.

Every value a template shows is escaped unless it is :class:`markupsafe.Markup`: the
catalogues' texts (:func:`loralab.report.text.t`), the MathML formulas (:mod:`.mathml`), the
``<img>`` tags with their base64 PNGs (:func:`img`) and the inline CSS/JS (:mod:`.assets`).
File names, corpus lines, sample generations, run labels and numbers are plain strings.
"""

from __future__ import annotations

import base64
import functools
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import jinja2.ext
from markupsafe import Markup

from . import chapters
from .text import t

if TYPE_CHECKING:
    from .data import ReportData

__all__ = ["environment", "img", "render_page"]

TEMPLATES = Path(__file__).with_name("templates")


class LayoutBreaks(jinja2.ext.Extension):
    """Line breaks between two tags in a template are layout, not content: they are dropped
    with the indentation around them, as is a template's last line break. (A tag is HTML or
    Jinja: a line ending in ``>`` or ``}`` before a line starting with ``<`` or ``{``.)
    ``{{ "\\n" }}`` writes a real line break."""

    _BREAK = re.compile(r"(?<=[>}])[ \t]*\n\s*(?=[<{]|\Z)")

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return self._BREAK.sub("", source)


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment (autoescaping, undefined names are errors)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              extensions=[LayoutBreaks])


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24]) if png[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)


def img(png: bytes, alt: str, *, index: int | None = None, hidden: bool = False) -> Markup:
    """An ``<img>`` with the PNG embedded as a ``data:`` URI; ``alt`` is HTML (a caption),
    shown as its text. ``index`` and ``hidden`` are the rank explorer's attributes."""
    w, h = _png_size(png)
    src = base64.b64encode(png).decode("ascii")
    extra = Markup("") if index is None else Markup(' data-index="{}"').format(index)
    if hidden:
        extra += Markup(" hidden")
    return Markup('<img src="data:image/png;base64,{}" width="{}" height="{}" alt="{}"{}>'
                  ).format(src, w, h, Markup(alt).striptags(), extra)


class _Figures:
    """Numbers the page's figures in order: ``Figure n.`` before each caption."""

    def __init__(self, lang: str) -> None:
        self.lang, self.n = lang, 0

    def __call__(self, png: bytes, caption: str) -> dict[str, Markup]:
        self.n += 1
        return {"img": img(png, caption), "caption": Markup("{} {}. {}").format(
            t("fig", self.lang), self.n, Markup(caption))}


def render_page(data: ReportData) -> str:
    """The whole page for ``data`` as one HTML string."""
    import torch

    from .. import plots
    from .assets import CSS, JS
    from .mathml import formulas

    lang, cfg = data.config.lang, data.demo.config
    figure = _Figures(lang)

    def words(key: str, **values: object) -> Markup:
        return t(key, lang, **values)

    context = {
        "t": words, "lang_attr": "zh-CN" if lang == "zh" else "en",
        "css": Markup(CSS), "js": Markup(JS),
        "f": {k: Markup(v) for k, v in formulas(cfg.hidden_size, cfg.alpha, lang).items()},
        "meta": {"preset": data.config.preset, "seed": data.config.seed, "d": cfg.hidden_size,
                 "alpha": f"{cfg.alpha:g}", "torch": torch.__version__, "date": data.built,
                 "secs": f"{sum(data.seconds.values()):.1f}"},
        "hint": plots.CJK_FONT_HINT if lang == "zh" and not data.cjk_font else None,
        "ov": chapters.overview(data), "fl": chapters.flow(data), "api": chapters.api(data),
        "m": chapters.math(data), "run": chapters.running(data, figure),    # figure 1, then
        "sl": chapters.explorer(data, img), "faq": chapters.faq(data),
        "exts": chapters.extensions(data, figure),                          # the extensions'
        "ext_titles": chapters.EXT_ORDER}
    return environment().get_template("page.html.j2").render(context)
