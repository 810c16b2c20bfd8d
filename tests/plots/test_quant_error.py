"""loralab.plots.quant_error: what a rank-r adapter wins back of the quantization error."""

from __future__ import annotations

import pytest

from loralab.lowrank.quant_error import QuantAnalysis, QuantRow
from loralab.plots import png_bytes
from loralab.plots.quant_error import quant_figure

from .conftest import is_png, legend_texts

RANKS, ITERS = (2, 4, 8), (1, 2, 3, 4)


@pytest.fixture
def analysis():
    """LoftQ's residual falling with the rank and the rounds, under QLoRA's start 0.5."""
    rows = [QuantRow(r, t, 0.5 / (r * t)) for r in RANKS for t in ITERS]
    return QuantAnalysis(label="W", shape=(16, 32), bits=4, frobenius_norm=2.0,
                         quant_error=1.0, rows=rows,
                         error_singular_values=[1.0 / k for k in range(1, 17)],
                         random_singular_values=[0.5] * 16)


def test_three_panels_against_rank_rounds_and_index(analysis):
    fig = quant_figure(analysis)
    assert len(fig.axes) == 3
    by_rank, by_rounds, spectrum = fig.axes
    start = analysis.quant_error / analysis.frobenius_norm
    # rounds 1, the middle one and the last; then QLoRA's start (B = 0) as a flat line
    assert [ln.get_label() for ln in by_rank.get_lines()][:3] == [
        "LoftQ, 1 round", "LoftQ, 3 rounds", "LoftQ, 4 rounds"]
    assert set(by_rank.get_lines()[-1].get_ydata()) == {start}
    assert list(by_rank.get_lines()[0].get_ydata()) == pytest.approx(
        [analysis.residual(r, 1) / analysis.frobenius_norm for r in RANKS])
    assert [t.get_text() for t in by_rank.get_xticklabels()] == ["2", "4", "8"]
    assert len(by_rounds.get_lines()) == len(RANKS) + 1
    assert legend_texts(by_rounds)[:3] == ["r=2", "r=4", "r=8"]
    assert len(spectrum.get_lines()) == 2 + len(RANKS)        # two spectra, a line per rank
    assert "4-bit" in by_rank.get_title()
    assert "(16×32)" in fig._suptitle.get_text()
    assert is_png(png_bytes(fig))


def test_a_long_label_is_cut_from_the_left(analysis):
    from dataclasses import replace

    fig = quant_figure(replace(analysis, label="x" * 50 + "layers.0.attn.q_proj.weight"))
    title = fig._suptitle.get_text()
    assert title.startswith("…") and "q_proj.weight" in title and len(title.split("  ")[0]) == 70
