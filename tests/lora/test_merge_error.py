"""``merge_errors``: each combination's distance from the exact weighted sum, numpy as oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lora_tiny import Tiny

from loralab.lora import AdapterConfig, add_adapter, inject_lora, lora_layers
from loralab.lora.merge_error import merge_errors
from loralab.lora.state import adapters_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")
WEIGHTS = [0.6, -0.4]


def two(d: int = 12) -> Tiny:
    torch.manual_seed(0)
    model = Tiny(d=d)
    cfg = AdapterConfig(r=3, lora_alpha=6, target_modules=["q_proj", "v_proj"])
    inject_lora(model, cfg, adapter_name="x")
    add_adapter(model, "y", cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for name in ("x", "y"):
                for t in layer.factors(name):
                    t.copy_(torch.randn(t.shape, generator=gen))
    return model


def numpy_exact(model: Tiny) -> dict[str, np.ndarray]:
    out = {}
    for path, layer in lora_layers(model).items():
        out[path] = sum(w * layer.scaling[n] * (layer.factors(n)[1].detach().double().numpy()
                                                @ layer.factors(n)[0].detach().double().numpy())
                        for n, w in zip(("x", "y"), WEIGHTS, strict=True))
    return out


def test_cat_is_exact_and_svd_is_eckart_young() -> None:
    model = two()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = {r.combination: r for r in merge_errors(model, ["x", "y"], WEIGHTS).rows}
    exact = numpy_exact(model)
    norm = np.sqrt(sum(np.sum(e ** 2) for e in exact.values()))
    tail = np.sqrt(sum(np.sum(np.linalg.svd(e, compute_uv=False)[3:] ** 2)
                       for e in exact.values()))
    assert got["cat"].relative < 1e-6 and got["cat"].rank == 6
    assert got["svd"].relative == pytest.approx(tail / norm, rel=1e-4)
    assert got["svd"].rank == 3
    assert all(got[c].relative > got["svd"].relative for c in ("linear", "ties", "dare_linear"))
    assert set(got) == {"linear", "cat", "svd", "ties", "ties_svd", "dare_linear", "dare_ties",
                        "dare_linear_svd", "dare_ties_svd", "magnitude_prune",
                        "magnitude_prune_svd"}
    # the model ends as it began: no temporary adapter left, every tensor the same
    assert list(adapters_of(model).configs) == ["x", "y"]
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_kept_layer_holds_the_exact_sum_and_each_combination() -> None:
    model = two()
    errors = merge_errors(model, ["x", "y"], WEIGHTS, combinations=("cat", "svd"), seed=3)
    want = numpy_exact(model)[errors.layer]
    np.testing.assert_allclose(errors.exact.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(errors.layer_deltas["cat"].numpy(), want, rtol=1e-4, atol=1e-5)
    assert errors.layer_deltas["svd"].shape == errors.exact.shape
    sigma = np.linalg.svd(errors.layer_deltas["svd"].double().numpy(), compute_uv=False)
    assert sigma[2] > 1e-3 * sigma[0] and sigma[3] < 1e-6 * sigma[0]      # rank 3 (float32)


def test_dare_is_repeatable_for_one_seed() -> None:
    model = two()
    a = merge_errors(model, ["x", "y"], WEIGHTS, combinations=("dare_ties",), seed=5).rows
    b = merge_errors(model, ["x", "y"], WEIGHTS, combinations=("dare_ties",), seed=5).rows
    c = merge_errors(model, ["x", "y"], WEIGHTS, combinations=("dare_ties",), seed=6).rows
    assert a == b and a != c
