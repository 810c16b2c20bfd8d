"""loralab.lowrank.heatmap: ΔW − [ΔW]_r against numpy, the generated updates, the result type."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from loralab import lowrank as L
from loralab.errors import LoralabError
from loralab.lowrank.heatmap import block_size

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_residuals_are_eckart_young_against_numpy():
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(48, 40, generator=gen, dtype=torch.float64)
    delta = torch.randn(48, 40, generator=gen, dtype=torch.float64)
    before = delta.clone()
    h = L.analyze_heatmap(w0, delta, [8, 2, 40], w0_label="w", delta_label="d", max_cells=16)
    s = np.linalg.svd(delta.numpy(), compute_uv=False)
    assert h.sweep.ranks == [2, 8, 40] and h.shape == (48, 40)
    for r, err, rel in zip(h.sweep.ranks, h.sweep.optimal_error, h.sweep.relative_error,
                           strict=True):
        ref = math.sqrt(float((s[r:] ** 2).sum()))
        assert err == pytest.approx(ref, rel=1e-10, abs=1e-10)
        assert rel == pytest.approx(ref / np.linalg.norm(s), rel=1e-10, abs=1e-12)
    u, sv, vh = h.factors                                             # the figure's SVD
    torch.testing.assert_close((u * sv) @ vh, delta)
    assert h.w0_norm == pytest.approx(float(np.linalg.norm(w0.numpy())), rel=1e-12)
    assert h.block == 3 == block_size((48, 40), 16)                   # ceil(48 / 16)
    assert torch.equal(delta, before) and h.delta is delta and h.w0 is w0


def test_to_dict_is_the_commands_json():
    w0 = L.gaussian_matrix(20, 12, seed=1)
    delta = L.low_rank_plus_noise(20, 12, rank=3, noise=0.0, seed=2)
    h = L.analyze_heatmap(w0, delta, [1, 3], w0_label="W0", delta_label="ΔW")
    data = h.to_dict()
    assert list(data) == ["shape", "w0", "delta", "w0_norm", "delta_norm", "block", "ranks",
                          "residual_error", "residual_relative"]
    assert data["shape"] == [20, 12] and data["block"] == 1 and data["ranks"] == [1, 3]
    assert data["delta_norm"] == pytest.approx(float(delta.double().norm()), rel=1e-6)
    assert data["residual_error"][1] < 1e-5 * data["delta_norm"]      # rank-3 ΔW: exact
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.max_cells = 3


def test_block_size():
    assert block_size((10, 10), 512) == 1
    assert block_size((513, 4), 512) == 2
    assert block_size((4, 1500), 500) == 3


def test_lowrank_delta_is_scaled_to_the_base():
    w0 = L.gaussian_matrix(30, 20, seed=4)
    delta, label = L.generated_delta("lowrank", w0, rank=4, generator=5, scale=0.25,
                                     noise=0.1)
    assert delta.dtype == w0.dtype and delta.shape == w0.shape
    assert float(delta.double().norm()) == pytest.approx(0.25 * float(w0.double().norm()),
                                                         rel=1e-5)
    assert label == "low rank 4 + noise 0.1, ×0.25‖W0‖_F"
    sv = torch.linalg.svdvals(delta.double())
    assert float(sv[4] / sv[3]) < 0.5                                 # signal rank 4, then noise


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"kind": "seed", "rank": 21}, "signal rank 21 is not allowed; it must be 1..20"),
    ({"kind": "lowrank", "rank": 2, "scale": 0.0}, "scale=0.0 is not allowed"),
    ({"kind": "other", "rank": 2}, "kind="),
])
def test_bad_updates_are_refused(kwargs, needle):
    w0 = L.gaussian_matrix(30, 20, seed=0)
    kind = kwargs.pop("kind")
    with pytest.raises(LoralabError, match=needle):
        L.generated_delta(kind, w0, generator=0, **kwargs)


def test_bad_inputs_are_refused():
    w0 = torch.zeros(8, 8)
    with pytest.raises(LoralabError, match=r"ΔW 'd' has shape \(8, 6\); it must match W0's"):
        L.analyze_heatmap(w0, torch.ones(8, 6), [1], delta_label="d")
    with pytest.raises(LoralabError, match="NaN"):
        L.analyze_heatmap(w0, torch.full((8, 8), math.nan), [1])
    with pytest.raises(LoralabError, match="rank 9"):
        L.analyze_heatmap(w0, torch.ones(8, 8), [9])
