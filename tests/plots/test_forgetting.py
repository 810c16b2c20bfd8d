"""loralab.plots.forgetting: the learning–forgetting plane and the intruder maps."""

from __future__ import annotations

from loralab.plots import png_bytes
from loralab.plots.forgetting import forgetting_figure, intruder_figure
from loralab.results.forgetting import Forgetting, ForgettingPoint
from loralab.results.intruders import EPSILON_GRID, IntruderMap, IntruderRow, Intruders, LambdaPoint

from .conftest import is_png


def _forgetting() -> Forgetting:
    pts = [ForgettingPoint("full", "full", None, 1.0, 2.5, 0.5),
           ForgettingPoint("lora-r2-attn", "lora", 2, 1.4, 2.1, 0.1),
           ForgettingPoint("rslora-r8-attn", "rslora", 8, 1.2, 2.3, 0.3)]
    return Forgetting("the pretraining English (held out)", 3.0, 2.0, pts)


def _intruders() -> Intruders:
    rows = [IntruderRow(label, m, r, "attn", 4, list(EPSILON_GRID),
                        [min(10.0, i * k) for i in range(len(EPSILON_GRID))], 2.0 * k)
            for label, m, r, k in (("full", "full", None, 0.0),
                                   ("lora-r2-attn", "lora", 2, 1.0),
                                   ("rslora-r8-attn", "rslora", 8, 0.5))]
    maps = [IntruderMap(r.label, "blocks.0.attn.q_proj", [[0.9] * 32 for _ in range(10)])
            for r in rows]
    sweep = [LambdaPoint("lora-r2-attn", lam, 3, 1.4 + (1 - lam) / 10, 2.1, 0.1 * lam)
             for lam in (1.0, 0.75, 0.5)]
    return Intruders(10, 0.5, ["blocks.0.attn.q_proj"], rows, maps, sweep)


def test_forgetting_plane_has_a_point_per_run_and_the_sweep_beside():
    study, intr = _forgetting(), _intruders()
    fig = forgetting_figure(study, intr)
    left, right = fig.axes
    xs = sorted(x for c in left.collections for x, _ in c.get_offsets())
    assert xs == sorted(p.forgetting for p in study.points)           # the base: in the title
    assert f"{study.base_target_val_loss:.2f}" in left.get_title()
    (line,) = right.get_lines()
    assert list(line.get_xdata()) == [p.forgetting for p in intr.lambda_sweep]
    assert is_png(png_bytes(fig))
    assert len(forgetting_figure(study).axes) == 1                     # no sweep: one panel


def test_intruder_figure_maps_each_run_and_a_curve_each():
    intr = _intruders()
    fig = intruder_figure(intr)
    maps = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in maps] == [m.label for m in intr.maps]
    curves = next(ax for ax in fig.axes if ax.get_lines() and not ax.images)
    assert len([ln for ln in curves.get_lines() if len(ln.get_xdata()) > 2]) == len(intr.rows)
    assert is_png(png_bytes(fig))
