"""loralab.plots.report: the rank explorer's frames and Chinese labels for any figure."""

from __future__ import annotations

import io

import numpy as np
import pytest

from loralab.plots import cjk_font, new_figure
from loralab.plots.report import HeatmapRow, localize_figure, rank_figure_pngs

from .conftest import all_texts, is_png


def _frames(ranks=(1, 2, 3), c=6):
    rng = np.random.default_rng(0)
    m = rng.standard_normal((c, c))
    u, s, vt = np.linalg.svd(m)
    frames = []
    for r in ranks:
        approx = (u[:, :r] * s[:r]) @ vt[:r]
        frames.append([HeatmapRow(m, approx, float(np.abs(m).max()),
                                  ("M", f"M_{r}", "M − M_r"))] * 2)
    return frames


def _image(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")


def test_one_png_per_rank_all_of_the_same_size():
    frames = _frames()
    pngs = rank_figure_pngs(frames, [f"r = {r}" for r in (1, 2, 3)], dpi=40)
    assert len(pngs) == 3 and all(is_png(p) for p in pngs)
    shapes = {_image(p).shape for p in pngs}
    assert len(shapes) == 1                                    # the slider's image never jumps
    assert not np.array_equal(_image(pngs[0]), _image(pngs[2]))   # but what it shows changes


def test_frames_and_titles_must_pair_up():
    with pytest.raises(ValueError):
        rank_figure_pngs(_frames(), ["only one title"], dpi=40)


def test_localize_translates_whole_matches_and_counts_them():
    fig = new_figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="rank r = 4")
    ax.set_title("rank r")
    ax.set_xlabel("rank r (log)")          # not a whole match: stays
    ax.legend()
    table = [(r"rank r", "秩 r"), (r"rank r = (\d+)", r"秩 r = \1")]
    assert localize_figure(fig, table, None) == 2
    texts = all_texts(fig)
    assert {"秩 r", "秩 r = 4", "rank r (log)"} <= set(texts)
    assert "rank r" not in texts


def test_chinese_labels_draw_with_the_cjk_font(no_missing_glyphs):
    font = cjk_font()
    if font is None:
        pytest.skip("no CJK font installed (make browser installs one)")
    fig = new_figure(cjk=True)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="秩")
    ax.set_title("秩 r 的误差")
    ax.legend()
    localize_figure(fig, [("秩 r 的误差", "低秩误差")], font)
    assert "低秩误差" in all_texts(fig)
    png = rank_figure_pngs(_frames((1,)), ["秩 r = 1"], font=font, dpi=40)[0]
    assert is_png(png)
    from matplotlib.text import Text

    assert all(t.get_fontfamily()[0] == font for t in fig.findobj(Text) if t.get_text())
    fig.canvas.draw()                         # a glyph missing here would warn: none does
