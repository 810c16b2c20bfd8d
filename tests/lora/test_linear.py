"""LoRALinear: init, the forward (fused and plain) and its gradients, PEFT as the oracle."""

from __future__ import annotations

import copy
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from lora_tiny import randomize  # noqa: E402
from torch import nn  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    LoRALinear,
)
from loralab.lora.linear import _FusedLoRA  # noqa: E402


@pytest.mark.parametrize("init", [True, "gaussian", "pissa"])
def test_output_equals_base_at_init(init: str) -> None:
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    ref = copy.deepcopy(base)
    layer = LoRALinear(base, r=4, lora_alpha=8, init_lora_weights=init)
    x = torch.randn(5, 12)
    if init == "pissa":
        torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=1e-5)
    else:
        assert torch.equal(layer(x), ref(x))
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0


def test_init_distributions_as_peft() -> None:
    d_in, r = 400, 16
    layer = LoRALinear(nn.Linear(d_in, 300), r=r, lora_alpha=16)
    a = layer.lora_A["default"].weight
    # kaiming_uniform(a=√5) on (r, d_in) is U(-1/√d_in, 1/√d_in): std = 1/√(3 d_in)
    assert a.abs().max() <= 1 / math.sqrt(d_in)
    assert abs(a.std().item() - 1 / math.sqrt(3 * d_in)) < 0.05 / math.sqrt(d_in)
    g = LoRALinear(nn.Linear(d_in, 300), r=r, lora_alpha=16,
                   init_lora_weights="gaussian").lora_A["default"].weight
    assert abs(g.std().item() - 1 / r) < 0.05 / r
    assert a.shape == (r, d_in) and layer.lora_B["default"].weight.shape == (300, r)


def test_generator_makes_init_reproducible() -> None:
    base = nn.Linear(6, 6)
    a1 = LoRALinear(copy.deepcopy(base), 2, 4, generator=torch.Generator().manual_seed(3))
    a2 = LoRALinear(copy.deepcopy(base), 2, 4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a1.lora_A["default"].weight, a2.lora_A["default"].weight)


@pytest.mark.parametrize("use_rslora", [False, True])
def test_forward_is_the_formula(use_rslora: bool) -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(7, 5), r=3, lora_alpha=6, use_rslora=use_rslora)
    randomize(nn.Sequential(layer))
    s = 6 / math.sqrt(3) if use_rslora else 6 / 3
    assert layer.scaling["default"] == pytest.approx(s)
    x = torch.randn(2, 4, 7)
    w0, b0 = layer.base.weight.double().numpy(), layer.base.bias.double().numpy()
    a = layer.lora_A["default"].weight.detach().double().numpy()
    b = layer.lora_B["default"].weight.detach().double().numpy()
    xn = x.double().numpy()
    expected = xn @ w0.T + b0 + s * (xn @ a.T) @ b.T  # (2, 4, 5)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.delta_weight().detach().numpy(), s * b @ a, rtol=1e-5,
                               atol=1e-6)


def peft_twin(layer: LoRALinear, dropout: float = 0.0) -> nn.Module:
    from peft import LoraConfig
    from peft.tuners.lora import Linear as PeftLinear

    cfg = LoraConfig(r=layer.r["default"], lora_alpha=layer.lora_alpha["default"],
                     use_rslora=layer.use_rslora["default"],
                     lora_dropout=dropout)
    twin = PeftLinear(copy.deepcopy(layer.base), "default", config=cfg, r=layer.r["default"],
                      lora_alpha=layer.lora_alpha["default"])
    with torch.no_grad():
        twin.lora_A["default"].weight.copy_(layer.lora_A["default"].weight)
        twin.lora_B["default"].weight.copy_(layer.lora_B["default"].weight)
    return twin


@pytest.mark.parametrize("use_rslora", [False, True])
@pytest.mark.parametrize("hooked", [False, True])  # a hook on base forces the module path
@pytest.mark.parametrize("batch", [(3, 2), (8, 4)])
def test_forward_and_grads_equal_peft(use_rslora: bool, hooked: bool,
                                      batch: tuple[int, int]) -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(9, 6), r=4, lora_alpha=5, use_rslora=use_rslora)
    randomize(nn.Sequential(layer))
    twin = peft_twin(layer)
    assert twin.scaling["default"] == pytest.approx(layer.scaling["default"])
    if hooked:
        layer.base.register_forward_hook(lambda m, i, o: None)
    x1 = torch.randn(*batch, 9, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    gy = torch.randn(*batch, 6)
    y1, y2 = layer(x1), twin(x2)
    torch.testing.assert_close(y1, y2)
    y1.backward(gy)
    y2.backward(gy)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(layer.lora_A["default"].weight.grad,
                               twin.lora_A["default"].weight.grad)
    torch.testing.assert_close(layer.lora_B["default"].weight.grad,
                               twin.lora_B["default"].weight.grad)
    assert layer.base.weight.grad is None


def test_autocast_takes_the_module_path_and_equals_peft() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 8), r=4, lora_alpha=8)
    randomize(nn.Sequential(layer))
    twin = peft_twin(layer)
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, y_peft = layer(x), twin(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, y_peft)


def test_fused_function_gradcheck() -> None:
    gen = torch.Generator().manual_seed(0)

    def t(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.double).requires_grad_(True)

    x, xd, w, b, a, bb = t(2, 3, 5), t(2, 3, 5), t(4, 5), t(4), t(2, 5), t(4, 2)
    assert torch.autograd.gradcheck(lambda x, w, b, a, bb: _FusedLoRA.apply(x, None, w, b, a,
                                                                            bb, 0.7),
                                    (x, w, b, a, bb))
    assert torch.autograd.gradcheck(lambda *z: _FusedLoRA.apply(*z, None, a, bb, 2.0), (x, xd, w))
    assert torch.autograd.gradcheck(lambda *z: _FusedLoRA.apply(*z, 2.0), (x, xd, w, b, a, bb))


@pytest.mark.parametrize("n_tokens", [64, 3])
@pytest.mark.parametrize("dropout", [False, True])
def test_fused_function_equals_the_plain_formula(n_tokens: int, dropout: bool) -> None:
    """Output and every gradient against autograd through ``x W0ᵀ + b + s·(x_d Aᵀ) Bᵀ``."""
    gen = torch.Generator().manual_seed(1)
    leaves = [torch.randn(*shape, generator=gen, dtype=torch.double).requires_grad_(True)
              for shape in [(n_tokens, 16), (12, 16), (12,), (4, 16), (12, 4)]]
    xd = torch.randn(n_tokens, 16, generator=gen, dtype=torch.double) if dropout else None
    gy = torch.randn(n_tokens, 12, generator=gen, dtype=torch.double)

    def grads(fn):
        y = fn(*leaves)
        return [y.detach(), *torch.autograd.grad(y, leaves, gy)]

    x_d = (lambda x: x) if xd is None else (lambda x: xd)
    ours = grads(lambda x, w, b, a, bb: _FusedLoRA.apply(x, xd, w, b, a, bb, 0.5))
    plain = grads(lambda x, w, b, a, bb: x @ w.T + b + 0.5 * (x_d(x) @ a.T) @ bb.T)
    for got, want in zip(ours, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 16), r=4, lora_alpha=4, lora_dropout=0.5)
    randomize(nn.Sequential(layer))
    x = torch.randn(64, 16)
    layer.eval()
    torch.testing.assert_close(layer(x), peft_twin(layer, 0.5).eval()(x))
    layer.train()
    torch.manual_seed(5)
    y_train = layer(x)
    assert not torch.allclose(y_train, layer.eval()(x))
    twin = peft_twin(layer, 0.5).train()
    torch.manual_seed(5)
    y_ours = layer.train()(x)
    torch.manual_seed(5)
    y_peft = twin(x)
    torch.testing.assert_close(y_ours, y_peft)  # same dropout mask, same output
    gy = torch.randn_like(y_ours)
    y_ours.backward(gy)
    y_peft.backward(gy)
    torch.testing.assert_close(layer.lora_A["default"].weight.grad,
                               twin.lora_A["default"].weight.grad)
    torch.testing.assert_close(layer.lora_B["default"].weight.grad,
                               twin.lora_B["default"].weight.grad)
    assert not layer.merged


def test_rank_of_delta_weight_at_most_r() -> None:
    torch.manual_seed(0)
    for r in (1, 3, 5):
        layer = LoRALinear(nn.Linear(16, 12), r=r, lora_alpha=2)
        randomize(nn.Sequential(layer), seed=r)
        sv = np.linalg.svd(layer.delta_weight().detach().double().numpy(), compute_uv=False)
        assert np.sum(sv > 1e-5 * sv[0]) == r  # float32 noise aside, rank r


def test_layer_rejects_non_linear() -> None:
    with pytest.raises(LoralabError, match="wraps an nn.Linear or a Conv1D, got Conv1d"):
        LoRALinear(nn.Conv1d(2, 2, 1), r=1, lora_alpha=1)  # type: ignore[arg-type]
