"""The studies' figures: what each draws, from hand-made study results (no training)."""

from __future__ import annotations

from loralab.plots.studies import lr_figure, placement_figure
from loralab.results.study import LrCurve, PlacementRow, StudyResult

GRID = [1e-4, 1e-3, 1e-2]


def _lr_study() -> StudyResult:
    return StudyResult(name="lr", curves=[
        LrCurve("full", "full", None, GRID, [2.0, 1.5, 3.0], 1e-3, 1.2e-3, 1.5, False),
        LrCurve("lora-r4", "lora", 4, GRID, [3.0, 2.0, 1.8], 1e-2, 1e-2, 1.8, True)],
        ratios={"lora-r4": 8.3})


def test_lr_figure_log_x_one_curve_and_one_star_per_kind() -> None:
    fig = lr_figure(_lr_study())
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    curves = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(GRID)]
    stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(curves) == 2 and len(stars) == 2
    assert list(curves[1].get_ydata()) == [3.0, 2.0, 1.8]
    assert stars[0].get_markerfacecolor() != "none" and stars[1].get_markerfacecolor() == "none"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["full fine-tuning: best 0.0012", "LoRA r=4: best 0.01, 8.3× full's"]


def test_placement_figure_bars_per_set_and_budget_full_as_a_line() -> None:
    rows = [PlacementRow("full", "all weights", None, None, 1000, None, 1.5)]
    for b, (ra, rm) in ((4, (9, 7)), (16, (36, 29))):
        rows += [PlacementRow(f"a{b}", "attn", ra, b, 72 * b, 1.0, 1.9),
                 PlacementRow(f"m{b}", "mlp", rm, b, 70 * b, 0.97, 1.7),
                 PlacementRow(f"x{b}", "attn+mlp", b, b, 72 * b, 1.0, 1.6)]
    fig = placement_figure(StudyResult(name="placement", placement=rows))
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert heights == [1.6, 1.6, 1.7, 1.7, 1.9, 1.9]
    assert [ln.get_ydata()[0] for ln in ax.get_lines()] == [1.5]      # full fine-tuning
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "budget: all layers at r=4", "budget: all layers at r=16"]
