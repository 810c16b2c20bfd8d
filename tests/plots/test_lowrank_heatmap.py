"""loralab.plots.lowrank_heatmap: block averages and the heatmaps of ``loralab heatmap``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loralab.errors import LoralabError
from loralab.plots import png_bytes
from loralab.plots.lowrank_heatmap import block_average, block_size, heatmap_figure, heatmaps_figure

from .conftest import is_png


@pytest.mark.parametrize("shape, cells, b", [((10, 4), 512, 1), ((1024, 8), 512, 2),
                                              ((8, 1025), 512, 3), ((11, 11), 4, 3)])
def test_block_size_is_the_ceiling(shape, cells, b):
    assert block_size(shape, cells) == b


def test_block_average_keeps_the_mean_and_small_matrices():
    a = np.arange(12.0).reshape(3, 4)
    same, b = block_average(a, max_cells=8)
    assert b == 1 and np.array_equal(same, a) and same.dtype == np.float64
    avg, b = block_average(torch.ones(6, 6), max_cells=3)           # a tensor is accepted too
    assert b == 2 and avg.shape == (3, 3) and np.all(avg == 1.0)


def _pair(m=12, n=8, rank=2):
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(m, n, generator=g)
    delta = torch.randn(m, rank, generator=g) @ torch.randn(rank, n, generator=g)
    return w0, delta


def test_panels_w0_w_delta_and_a_residual_per_rank():
    w0, delta = _pair()
    fig = heatmaps_figure(w0, delta, [1, 2])
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert [ax.get_title().split(" (")[0] for ax in shown[:3]] == ["W₀", "W = W₀ + ΔW", "ΔW"]
    assert len(shown) == 3 + 2
    np.testing.assert_allclose(shown[0].images[0].get_array(), w0.numpy(), rtol=1e-6)
    np.testing.assert_allclose(shown[2].images[0].get_array(), delta.numpy(), rtol=1e-5)
    resid = shown[4].images[0].get_array()                       # ΔW has rank 2: nothing left
    assert np.abs(resid).max() < 1e-4 * np.abs(delta.numpy()).max()
    assert "0.0% of ‖ΔW‖_F" in shown[4].get_title()
    vw = shown[0].images[0].get_clim()                           # W₀ and W: one scale
    assert shown[1].images[0].get_clim() == vw and vw[0] == -vw[1]
    assert shown[3].images[0].get_clim() == shown[2].images[0].get_clim()
    assert is_png(png_bytes(fig))


def test_block_averaged_when_larger_than_the_cells():
    w0, delta = _pair(m=20, n=10)
    fig = heatmap_figure(w0, delta, 1, max_cells=5)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.images]
    assert len(shown) == 4
    assert shown[0].images[0].get_array().shape == (5, 3)            # 4×4 blocks, edges kept
    assert "mean of a 4×4 block" in fig._suptitle.get_text()


def test_shapes_must_match():
    with pytest.raises(LoralabError, match="differ in shape"):
        heatmaps_figure(torch.zeros(4, 4), torch.zeros(4, 5), [1])
