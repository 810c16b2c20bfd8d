"""loralab.plots.finetune: the three figures of ``loralab finetune``, on a hand-made result."""

from __future__ import annotations

import pytest

from loralab.plots import png_bytes
from loralab.plots.finetune import bridge_figure, convergence_figure, cost_figure, rank_colors

from .conftest import BASE_LOSS, all_texts, is_png, legend_texts


def test_rank_colors_go_from_light_to_dark():
    from matplotlib.colors import to_rgb

    shades = rank_colors([8, 2, 4])
    assert list(shades) == [2, 4, 8]                         # sorted, small r first
    brightness = [sum(to_rgb(shades[r])) for r in (2, 4, 8)]
    assert brightness == sorted(brightness, reverse=True)
    assert len(rank_colors([16])) == 1


@pytest.mark.parametrize("targets", [("attn",), ("attn", "attn+mlp")])
def test_convergence_has_a_panel_per_target_set_and_a_curve_per_run(make_result, targets):
    result = make_result(targets=targets)
    fig = convergence_figure(result)
    assert len(fig.axes) == len(targets)
    for ax, target in zip(fig.axes, targets, strict=True):
        runs = [r for r in result.runs if r.method in ("lora", "rslora") and r.targets == target]
        assert len(ax.get_lines()) == 2 + len(runs)           # the base, full FT, each run
        base = ax.get_lines()[0]
        assert set(base.get_ydata()) == {BASE_LOSS}
        assert ax.get_title() == f"LoRA on {target}"
        assert ax.get_yscale() == "log"
        labels = legend_texts(ax)
        assert sum("LoRA r=" in t for t in labels) == len(runs)
        assert any("rsLoRA" in t for t in labels) == any(r.rslora for r in runs)
        for line in ax.get_lines()[1:]:                       # every curve starts at the base
            assert line.get_xdata()[0] == 0 and line.get_ydata()[0] == BASE_LOSS
    assert "quick preset" in fig._suptitle.get_text()
    assert is_png(png_bytes(fig))


def test_bridge_shows_spectra_truncation_and_the_scale_rule(result):
    fig = bridge_figure(result)
    assert len(fig.axes) == 3
    spectra, trunc, rs = fig.axes
    n = len(result.analysis.spectra)
    assert len(spectra.get_lines()) == 2 * n + 1              # curve + 90 % dot each, the 0.9 line
    for line in spectra.get_lines()[:-1:2]:                   # cumulative energy: rises to 1
        y = line.get_ydata()
        assert all(a <= b + 1e-12 for a, b in zip(y, y[1:], strict=False))
        assert y[-1] == pytest.approx(1.0)
    assert sorted(legend_texts(spectra)) == ["q_proj", "v_proj"]   # a module named once
    r90 = [s.rank90 for s in result.analysis.spectra]
    assert f"rank {min(r90)}–{max(r90)} of 16" in fig._suptitle.get_text()
    assert [t.get_text() for t in trunc.get_xticklabels()] == ["2", "8"]
    assert len(rs.get_lines()) == 2 * len(result.analysis.rslora) + 1    # α/r, α/√r; full FT
    assert any("α/√r" in t for t in legend_texts(rs))


def test_bridge_without_rslora_says_so_instead_of_a_panel(make_result):
    fig = bridge_figure(make_result(rslora=False))
    rs = fig.axes[2]
    assert not rs.axison and not rs.get_lines()
    assert any("no α/√r comparison" in t for t in all_texts(fig))


def test_cost_compares_every_lora_run_with_full_fine_tuning(result):
    fig = cost_figure(result)
    assert len(fig.axes) == 2
    quality, cost = fig.axes
    lora = [r for r in result.runs if r.method in ("lora", "rslora")]
    full = result.run("full")
    assert len(cost.patches) == 2 * len(lora)                 # step time and optimizer state
    heights = [p.get_height() for p in cost.patches]
    assert heights[:len(lora)] == pytest.approx([r.step_time_s / full.step_time_s for r in lora])
    assert heights[len(lora):] == pytest.approx(
        [r.optimizer_state_bytes / full.optimizer_state_bytes for r in lora])
    ticks = [t.get_text() for t in cost.get_xticklabels()]
    assert ticks[:3] == ["r2-attn", "r8-attn", "rs-r8-attn"]          # rsLoRA r=8, not "rsr8"
    assert ticks[2].endswith("r8-attn")
    assert quality.get_xscale() == "log" and quality.get_yscale() == "log"
    assert "full fine-tuning" in legend_texts(quality)
    assert {t.get_text() for t in quality.texts} >= {"r=2", "r=8"}


def test_convergence_title_names_the_model_file_and_fits_the_figure(make_result):
    """A ``--model`` path shows as its last part, and the title wraps to the figure's width
    (it ran off a one-panel figure)."""
    import dataclasses

    result = make_result()
    result.config = dataclasses.replace(result.config, model="/very/long/path/to/a/model-dir/",
                                        targets=result.config.targets[:1])
    fig = convergence_figure(result)
    title = fig._suptitle
    assert "model-dir" in title.get_text() and "/very/long" not in title.get_text()
    renderer = fig.canvas.get_renderer()
    box = title.get_window_extent(renderer)
    assert title.get_wrap() and 0 <= box.x0 and box.x1 <= fig.bbox.width


@pytest.mark.parametrize("lo, hi", [(3.61, 3.70), (0.5, 6.4), (2.9, 3.05)])
def test_log_loss_axis_labels_at_least_two_ticks_inside_any_range(lo, hi):
    from matplotlib.figure import Figure

    from loralab.plots.finetune import _log_loss_axis

    ax = Figure().subplots()
    ax.plot([0, 1], [lo, hi])
    ax.set_ylim(lo, hi)
    _log_loss_axis(ax)
    ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
    labels = [ax.yaxis.get_major_formatter()(t, i) for i, t in enumerate(ticks)]
    assert len(ticks) >= 2 and all(labels) and len(set(labels)) == len(labels)
