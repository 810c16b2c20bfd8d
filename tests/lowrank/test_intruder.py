"""Intruder dimensions: the cosines and counts against numpy, the mitigation against PEFT's
``reduce_intruder_dimension`` (and against its own identities), bad arguments refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loralab.errors import LoralabError
from loralab.lowrank.intruder import (
    check_intruder_args,
    intruder_cosines,
    intruder_counts,
    left_basis,
    mitigate_intruders,
    similarity_map,
)


def _pair(seed: int = 0, m: int = 16, n: int = 24, r: int = 4, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(m, n, generator=g, dtype=torch.float64) / n ** 0.5
    delta = scale * torch.randn(m, r, generator=g, dtype=torch.float64) @ torch.randn(
        r, n, generator=g, dtype=torch.float64) / n
    return w0, delta


def test_cosines_match_numpy():
    w0, delta = _pair()
    u0 = np.linalg.svd(w0.numpy(), full_matrices=False)[0]
    u = np.linalg.svd((w0 + delta).numpy(), full_matrices=False)[0][:, :10]
    want = np.abs(u.T @ u0).max(axis=1)
    got = intruder_cosines(left_basis(w0), w0 + delta, 10)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    assert intruder_counts(got, (0.5, 1.0)) == [int((want < 0.5).sum()), 10]
    smap = similarity_map(left_basis(w0), w0 + delta, 10, 6)
    np.testing.assert_allclose(smap.numpy(), np.abs(u.T @ u0[:, :6]), atol=1e-10)


def test_unchanged_weight_has_no_intruder():
    w0, _ = _pair()
    cos = intruder_cosines(left_basis(w0), w0, 10)
    assert torch.allclose(cos, torch.ones(10, dtype=cos.dtype), atol=1e-8)


def test_mitigation_identities():
    w0, delta = _pair()
    same, n = mitigate_intruders(w0, delta, lam=1.0)          # λ = 1: nothing changes
    assert n > 0 and torch.allclose(same, delta, atol=1e-12)
    out, n = mitigate_intruders(w0, delta, rank=None, lam=0.5)
    u, s, vh = np.linalg.svd((w0 + delta).numpy(), full_matrices=False)
    u0 = np.linalg.svd(w0.numpy(), full_matrices=False)[0]
    idx = np.nonzero(np.abs(u[:, :10].T @ u0).max(axis=1) < 0.5)[0]
    want = delta.numpy() - 0.5 * (u[:, idx] * s[idx]) @ vh[idx]
    assert n == len(idx) > 0
    np.testing.assert_allclose(out.numpy(), want, atol=1e-10)
    cut, _ = mitigate_intruders(w0, delta, rank=4, lam=0.5)
    assert np.linalg.matrix_rank(cut.numpy(), tol=1e-9) <= 4


def test_mitigation_matches_peft():
    peft = pytest.importorskip("peft")
    from peft.tuners.lora.intruders import reduce_intruder_dimension

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(24, 16))
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"], init_lora_weights=False)
    pm = peft.get_peft_model(model, cfg)
    layer = pm.base_model.model[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.mul_(30.0)               # an update big enough to intrude
    w0 = layer.get_base_layer().weight.detach().clone()
    delta = layer.get_delta_weight("default").detach().clone()
    ours, n = mitigate_intruders(w0, delta, rank=4, top_k=10, epsilon=0.5, lam=0.75)
    assert n > 0
    reduce_intruder_dimension(pm, logging_sink=None)
    theirs = layer.get_delta_weight("intruder_reduced").detach()
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kwargs", [{"epsilon": 0.0}, {"epsilon": 1.5}, {"lam": 0.0},
                                    {"lam": float("nan")}, {"top_k": 17}, {"top_k": 0}])
def test_bad_arguments_refused(kwargs):
    w0, delta = _pair()
    with pytest.raises(LoralabError, match="not allowed"):
        mitigate_intruders(w0, delta, **kwargs)


def test_check_names_the_rank():
    with pytest.raises(LoralabError, match="top_k must be <= 16"):
        check_intruder_args(20, shape=(16, 24))
