"""loralab.plots.methods: the methods side by side, and DoRA's magnitude/direction view."""

from __future__ import annotations

import pytest

from loralab.plots import png_bytes
from loralab.plots.methods import METHOD_COLORS, direction_figure, methods_figure

from .conftest import is_png, legend_texts


def test_every_method_has_its_own_colour(result):
    from matplotlib.colors import is_color_like, to_hex

    assert set(result.config.methods) <= set(METHOD_COLORS)
    assert all(is_color_like(c) for c in METHOD_COLORS.values())
    assert len({to_hex(c) for c in METHOD_COLORS.values()}) == len(METHOD_COLORS)


def test_methods_shows_full_and_each_method_at_the_headline_rank(result):
    fig = methods_figure(result)
    assert len(fig.axes) == 2
    curves, bars = fig.axes
    labels = legend_texts(curves)
    assert labels[0].startswith("base, not fine-tuned")
    shown = [t.split(" (")[0] for t in labels[1:]]
    assert shown == ["full", "lora r=8", "rslora r=8", "dora r=8"]     # rank nearest 8, last set
    adapters = [result.run(f"{m}-r8-attn") for m in ("lora", "rslora", "dora")]
    full = result.run("full")
    assert [p.get_height() for p in bars.patches] == pytest.approx(
        [r.step_time_s / full.step_time_s for r in adapters])
    assert [t.get_text() for t in bars.get_xticklabels()] == ["lora", "rslora", "dora"]
    assert {t.get_text() for t in bars.texts} == {f"{r.trainable_params:,}" for r in adapters}
    assert is_png(png_bytes(fig))


def test_methods_without_full_fine_tuning_draws_no_bars(make_result):
    fig = methods_figure(make_result(methods=("lora", "dora"), full=False))
    curves, bars = fig.axes
    assert not bars.axison and not bars.patches
    assert [t.split(" (")[0] for t in legend_texts(curves)[1:]] == ["lora r=8", "dora r=8"]


def test_direction_has_a_panel_per_traced_method_with_its_sign(result):
    md = result.analysis.magnitude_direction
    fig = direction_figure(md)
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["full: r = -0.50 (paper: negative) ✓",
                      "lora: r = +0.50 (paper: positive) ✓",
                      "dora: r = -0.25 (paper: negative) ✗"]
    for ax, method in zip(fig.axes, ("full", "lora", "dora"), strict=True):
        pts = [p for p in md.points if p.method == method]
        assert sum(len(c.get_offsets()) for c in ax.collections) == len(pts)   # every point
        assert len(ax.get_lines()) == 1                                   # the fitted line
    assert legend_texts(fig.axes[0]) == ["layer 0", "layer 1"]
    assert "q_proj" in fig._suptitle.get_text() and "r=8" in fig._suptitle.get_text()


def test_direction_draws_only_the_methods_it_traced(result):
    from dataclasses import replace

    md = result.analysis.magnitude_direction
    fig = direction_figure(replace(md, correlation={"lora": 0.3}))
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["lora"]


def test_direction_of_a_deep_model_shows_layers_as_a_colour_scale(result):
    from dataclasses import replace

    md = result.analysis.magnitude_direction
    deep = [replace(p, layer=f"hf.model.layers.{i}.self_attn.q_proj")
            for i in range(12) for p in md.points[:1]]
    fig = direction_figure(replace(md, points=deep, correlation={"full": 0.1}))
    panel, bar = fig.axes
    assert panel.get_legend() is None and bar.get_ylabel() == "layer"
    assert bar.get_ylim() == (0.0, 11.0)                      # the block numbers of the paths
