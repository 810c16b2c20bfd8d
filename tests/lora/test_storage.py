"""How a base stores its weight (loralab.lora.storage): GPT-2's ``Conv1D`` keeps ``W``
transposed, and only the read/write pair knows it. On a square weight a missed transpose
raises nothing, so every check compares values with an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from loralab.lora import LoRAEmbedding, LoRALinear
from loralab.lora.storage import features, stores_transposed, weight_out_in

Conv1D = pytest.importorskip("transformers.pytorch_utils").Conv1D


def conv1d(d_in: int, d_out: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layer = Conv1D(d_out, d_in)                    # weight (d_in, d_out), y = x W + b
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    return layer


def trained(layer: LoRALinear, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    gen = torch.Generator().manual_seed(seed)
    a, b = layer.factors()
    with torch.no_grad():
        a.copy_(torch.randn(a.shape, generator=gen))
        b.copy_(torch.randn(b.shape, generator=gen))
    return a.detach().double().numpy(), b.detach().double().numpy()


@pytest.mark.parametrize(("d_in", "d_out"), [(6, 10), (7, 7)], ids=["non-square", "square"])
def test_conv1d_delta_merge_and_forward_are_out_in(d_in: int, d_out: int) -> None:
    base = conv1d(d_in, d_out)
    w_stored = base.weight.detach().double().numpy().copy()       # (d_in, d_out)
    w0 = w_stored.T                                              # (d_out, d_in): independent
    layer = LoRALinear(base, r=3, lora_alpha=6)
    a, b = trained(layer)
    s = 6 / 3
    delta = s * b @ a                                            # (d_out, d_in)
    if d_in == d_out:                                            # a transpose would not raise
        assert not np.allclose(delta, delta.T, atol=1e-3)
    assert layer.fan_in_fan_out and stores_transposed(base)
    assert (layer.out_features, layer.in_features) == features(base) == (d_out, d_in)
    np.testing.assert_allclose(layer.delta_weight().detach().double().numpy(), delta,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.effective_weight().double().numpy(), w0 + delta,
                               rtol=1e-5, atol=1e-5)
    x = torch.randn(4, d_in)
    want = x.double().numpy() @ (w0 + delta).T + base.bias.detach().double().numpy()
    np.testing.assert_allclose(layer(x).detach().double().numpy(), want, rtol=1e-4, atol=1e-4)
    layer.merge()
    np.testing.assert_allclose(base.weight.detach().double().numpy(), (w0 + delta).T,
                               rtol=1e-5, atol=1e-5)              # stored (d_in, d_out)
    np.testing.assert_allclose(layer(x).detach().double().numpy(), want, rtol=1e-4, atol=1e-4)
    layer.unmerge()
    np.testing.assert_allclose(base.weight.detach().double().numpy(), w_stored, atol=1e-5)


@pytest.mark.parametrize(("d_in", "d_out"), [(6, 10), (7, 7)], ids=["non-square", "square"])
def test_conv1d_dora_merge_equals_the_formula_and_peft(d_in: int, d_out: int) -> None:
    from peft import LoraConfig
    from peft.tuners.lora.layer import Linear as PeftLinear

    base = conv1d(d_in, d_out)
    w0 = base.weight.detach().double().numpy().T.copy()          # (d_out, d_in)
    twin_base = conv1d(d_in, d_out)
    layer = LoRALinear(base, r=2, lora_alpha=4, use_dora=True)
    np.testing.assert_allclose(layer.lora_magnitude_vector["default"].detach().double().numpy(),
                               np.linalg.norm(w0, axis=1), rtol=1e-5)   # ‖W0‖ of output rows
    a, b = trained(layer)
    with torch.no_grad():
        layer.lora_magnitude_vector["default"].mul_(1.5)
    m = layer.lora_magnitude_vector["default"].detach().double().numpy()
    full = w0 + 2 * b @ a
    want = (m / np.linalg.norm(full, axis=1))[:, None] * full    # (d_out, d_in)
    np.testing.assert_allclose(layer.effective_weight().double().numpy(), want, rtol=1e-5,
                               atol=1e-5)
    twin = PeftLinear(twin_base, "default", config=LoraConfig(r=2, lora_alpha=4,
                                                              fan_in_fan_out=True,
                                                              use_dora=True),
                      r=2, lora_alpha=4, is_target_conv_1d_layer=True)
    with torch.no_grad():
        twin.lora_A["default"].weight.copy_(layer.lora_A["default"].weight)
        twin.lora_B["default"].weight.copy_(layer.lora_B["default"].weight)
        twin.lora_magnitude_vector["default"].weight.copy_(layer.lora_magnitude_vector["default"])
    x = torch.randn(5, d_in)
    torch.testing.assert_close(layer(x), twin(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.delta_weight(), twin.get_delta_weight("default").t())
    layer.merge()
    twin.merge()
    np.testing.assert_allclose(base.weight.detach().double().numpy(), want.T, rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(base.weight, twin.base_layer.weight, rtol=1e-5, atol=1e-5)


def test_weight_out_in_is_a_view_of_the_storage() -> None:
    lin, c1d, emb = nn.Linear(3, 5), conv1d(3, 5), nn.Embedding(7, 4)
    assert weight_out_in(lin) is lin.weight and not stores_transposed(lin)
    for mod, shape in ((c1d, (5, 3)), (emb, (4, 7))):
        view = weight_out_in(mod)
        assert tuple(view.shape) == shape and features(mod) == shape
        with torch.no_grad():
            view[0, 1] = 42.0
        assert float(mod.weight.detach()[1, 0]) == 42.0         # written through the view


def test_embedding_delta_is_out_in_and_merges_transposed() -> None:
    torch.manual_seed(0)
    base = nn.Embedding(9, 4)
    e0 = base.weight.detach().double().numpy().copy()           # (V, d)
    layer = LoRAEmbedding(base, r=2, lora_alpha=2)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in layer.factors():
            t.copy_(torch.randn(t.shape, generator=gen))
    a, b = (t.detach().double().numpy() for t in layer.factors())   # (r, V), (d, r)
    assert layer.delta_weight().shape == (4, 9)                  # (d_out, d_in) = (d, V)
    np.testing.assert_allclose(layer.delta_weight().detach().double().numpy(), b @ a,
                               rtol=1e-5,
                               atol=1e-6)
    ids = torch.tensor([[0, 3, 8], [2, 2, 5]])
    want = (e0 + (b @ a).T)[ids.numpy()]
    np.testing.assert_allclose(layer(ids).detach().double().numpy(), want, rtol=1e-5,
                               atol=1e-5)
    layer.merge()
    np.testing.assert_allclose(base.weight.detach().double().numpy(), e0 + (b @ a).T,
                               rtol=1e-5, atol=1e-5)
    layer.unmerge()
    np.testing.assert_allclose(base.weight.detach().double().numpy(), e0, atol=1e-5)
