"""loralab.plots.demo: the seed demo's two panels, drawn and written in each format."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loralab.demo import LoraConfig, run_demo
from loralab.plots.demo import demo_figure, plot_demo

from .conftest import is_png, legend_texts

D = 32


@pytest.fixture(scope="module")
def demo():
    return run_demo(LoraConfig(hidden_size=D, rank_candidates=(2, 4, 8)), seed=1)


def test_left_is_the_seeds_curve_beside_its_theory(demo):
    fig = demo_figure(demo)
    assert len(fig.axes) == 2
    left, _ = fig.axes
    theory, seed = left.get_lines()
    r = np.asarray(theory.get_xdata())
    np.testing.assert_allclose(theory.get_ydata(), demo.config.alpha * D / np.sqrt(r))
    assert list(seed.get_xdata()) == [2, 4, 8]
    assert list(seed.get_ydata()) == [row.delta_norm for row in demo.rows]
    assert left.get_xscale() == "log" and left.get_yscale() == "log"
    assert [t.get_text() for t in left.get_xticklabels()] == ["2", "4", "8"]


def test_right_is_the_eckart_young_curve_of_every_rank(demo):
    _, right = demo_figure(demo).axes
    curve, marks = right.get_lines()
    sigma = np.asarray(demo.singular_values)
    want = [math.sqrt((sigma[r:] ** 2).sum() / (sigma ** 2).sum()) for r in range(D + 1)]
    np.testing.assert_allclose(curve.get_ydata(), want, rtol=1e-6, atol=1e-9)
    assert curve.get_ydata()[0] == pytest.approx(1.0) and curve.get_ydata()[-1] == 0.0
    np.testing.assert_allclose(marks.get_ydata(), [row.optimal_relative for row in demo.rows],
                               rtol=1e-6)
    assert right.get_xlim() == (0, D)
    assert len(legend_texts(right)) == 2
    assert f"r = 8: {demo.rows[-1].optimal_relative:.1%} remains" in [t.get_text()
                                                                      for t in right.texts]


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"),
                                           (".svg", b"<?xml")])
def test_plot_demo_writes_the_format_its_suffix_names(demo, tmp_path, suffix, magic):
    path = tmp_path / f"demo{suffix}"
    assert plot_demo(demo, path) == str(path)
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]       # no temp file left
    if suffix == ".png":
        assert is_png(path.read_bytes())
