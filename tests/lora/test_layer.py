"""LoRALinear, injection, merge/unmerge, counting: identities and PEFT as the oracle."""

from __future__ import annotations

import copy
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    LoRALinear,
    LoRAPrecisionWarning,
    count_parameters,
    format_parameter_count,
    inject_lora,
    lora_layers,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unload_lora,
    unmerge_lora,
)
from loralab.lora.linear import _FusedLoRA  # noqa: E402


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d, d)
        self.xq_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.v_proj(self.q_proj(x)) + self.xq_proj(x))


class Tiny(nn.Module):
    def __init__(self, d: int = 8, n: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block(d) for _ in range(n))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.layers:
            x = blk(x)
        return self.head(self.norm(x))


@pytest.fixture
def model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


def randomize(model: nn.Module, seed: int = 1) -> None:
    """Give every LoRA layer non-zero A and B (as after training)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in lora_layers(model).values():
            a, b = m.factors("default")
            a.copy_(torch.randn(a.shape, generator=gen))
            b.copy_(torch.randn(b.shape, generator=gen) * 0.1)


def snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]]]:
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(n, type(m).__name__) for n, m in model.named_modules()])


def assert_same(model: nn.Module, snap: tuple) -> None:
    state, kinds = snap
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == kinds
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k in state:
        assert torch.equal(now[k], state[k]), k


# ---------------------------------------------------------------- the layer

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


def test_merge_unmerge_identities() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(20, 14), r=4, lora_alpha=8)
    randomize(nn.Sequential(layer))
    w0 = layer.base.weight.detach().clone()
    x = torch.randn(6, 20)
    y = layer(x)
    layer.eval()
    assert not layer.merged  # eval() never merges
    assert layer.merge() == 0.0
    assert layer.merged
    w1 = layer.base.weight.detach().clone()
    layer.merge()  # idempotent
    assert torch.equal(layer.base.weight, w1)
    torch.testing.assert_close(layer(x), y, rtol=0, atol=1e-5)
    torch.testing.assert_close(w1, w0 + layer.delta_weight(), rtol=0, atol=1e-6)
    layer.unmerge()
    layer.unmerge()  # idempotent
    assert not layer.merged
    torch.testing.assert_close(layer.base.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), y, rtol=0, atol=1e-6)


def test_rank_of_delta_weight_at_most_r() -> None:
    torch.manual_seed(0)
    for r in (1, 3, 5):
        layer = LoRALinear(nn.Linear(16, 12), r=r, lora_alpha=2)
        randomize(nn.Sequential(layer), seed=r)
        sv = np.linalg.svd(layer.delta_weight().detach().double().numpy(), compute_uv=False)
        assert np.sum(sv > 1e-5 * sv[0]) == r  # float32 noise aside, rank r


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_merge_in_fp32_with_visible_error(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(32, 24).to(dtype), r=4, lora_alpha=8,
                       autocast_adapter_dtype=False)
    assert layer.lora_A["default"].weight.dtype == dtype
    assert LoRALinear(nn.Linear(32, 24).to(dtype), r=4, lora_alpha=8).factors()[0].dtype \
        == torch.float32          # PEFT's autocast_adapter_dtype=True
    randomize(nn.Sequential(layer))
    w0 = layer.base.weight.detach().clone()
    a, b = layer.factors()
    exact = w0.float() + b.float() @ a.float() * 2.0
    model = nn.Sequential(copy.deepcopy(layer))
    with pytest.warns(LoRAPrecisionWarning, match="rounded it by up to"):
        err = layer.merge()
    assert torch.equal(layer.base.weight, exact.to(dtype))  # one rounding of the fp32 sum
    assert err == pytest.approx(float((exact.to(dtype).float() - exact).abs().max().detach()))
    assert 0 < err == layer.merge_error
    with pytest.warns(LoRAPrecisionWarning, match="1 float16/bfloat16"):
        errors = merge_lora(model)
    assert errors == {"0": pytest.approx(err)}


def test_pissa_split_is_the_top_r_svd() -> None:
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    w0 = base.weight.detach().double().numpy().copy()
    layer = LoRALinear(base, r=3, lora_alpha=6, init_lora_weights="pissa")
    u, s, vt = np.linalg.svd(w0)
    top = (u[:, :3] * s[:3]) @ vt[:3]
    np.testing.assert_allclose(layer.delta_weight().detach().numpy(), top, atol=1e-5)
    np.testing.assert_allclose(layer.base.weight.detach().numpy(), w0 - top, atol=1e-5)


def test_pissa_equals_peft_pissa() -> None:
    from peft import LoraConfig
    from peft.tuners.lora import Linear as PeftLinear

    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    twin = PeftLinear(copy.deepcopy(base), "default", r=3, lora_alpha=6,
                      config=LoraConfig(r=3, lora_alpha=6, init_lora_weights="pissa"))
    ours = LoRALinear(base, r=3, lora_alpha=6, init_lora_weights="pissa")
    torch.testing.assert_close(ours.lora_A["default"].weight, twin.lora_A["default"].weight)
    torch.testing.assert_close(ours.lora_B["default"].weight, twin.lora_B["default"].weight)
    torch.testing.assert_close(ours.base.weight, twin.base_layer.weight)


# ---------------------------------------------------------------- injection

@pytest.mark.parametrize("targets", [["q_proj"], ["q_proj", "v_proj"], ["mlp.0"],
                                     ["layers.1.mlp.2", "head"], r".*\.(q|v)_proj",
                                     r"layers\.0\..*proj", "head"])
def test_matching_equals_peft(model: Tiny, targets: list[str] | str) -> None:
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    cfg = LoraConfig(target_modules=targets)
    expected = [n for n, m in model.named_modules()
                if n and isinstance(m, nn.Linear) and check_target_module_exists(cfg, n)]
    assert inject_lora(model, AdapterConfig(r=2, target_modules=targets)) == expected
    assert sorted(lora_layers(model)) == sorted(expected)
    if isinstance(targets, list):
        assert "layers.0.xq_proj" not in expected  # a suffix must follow a dot


def test_exclude_modules(model: Tiny) -> None:
    names = inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj", "v_proj"],
                                             exclude_modules=["layers.0.q_proj"]))
    assert names == ["layers.0.v_proj", "layers.1.q_proj", "layers.1.v_proj"]


def test_inject_freezes_all_but_lora(model: Tiny) -> None:
    inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"layers.{i}.q_proj.lora_{ab}.default.weight" for i in (0, 1)
                         for ab in "AB"}
    mark_only_lora_trainable(model, bias="lora_only")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {f"layers.{i}.q_proj.base.bias" for i in (0, 1)} <= trainable
    assert "head.bias" not in trainable
    mark_only_lora_trainable(model, bias="all")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"head.bias", "norm.bias", "layers.0.q_proj.base.bias"} <= trainable
    assert "head.weight" not in trainable


def test_no_match_lists_linear_names_and_changes_nothing(model: Tiny) -> None:
    snap = snapshot(model)
    with pytest.raises(ValueError, match="matches no module.*layers.0.q_proj.*head"):
        inject_lora(model, AdapterConfig(target_modules=["k_proj"]))
    assert_same(model, snap)


def test_matched_non_linear_is_an_error(model: Tiny) -> None:
    snap = snapshot(model)
    with pytest.raises(LoralabError, match="'layers.0.mlp'.*Sequential; LoRA is supported"):
        inject_lora(model, AdapterConfig(target_modules=["q_proj", "mlp"]))
    assert_same(model, snap)


def test_inject_twice_and_pissa_rank_errors(model: Tiny) -> None:
    snap = snapshot(model)
    with pytest.raises(LoralabError, match="'head' has weight \\(3, 8\\) and r=4"):
        inject_lora(model, AdapterConfig(r=4, target_modules=["q_proj", "head"],
                                         init_lora_weights="pissa"))
    assert_same(model, snap)
    inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(LoralabError, match="already has"):
        inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"]))


def test_shared_module_is_refused() -> None:
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    with pytest.raises(LoralabError, match="also reachable as '2'"):
        inject_lora(model, AdapterConfig(target_modules=["0"]))


def test_tied_weight_refuses_merge_and_pissa() -> None:
    emb, head = nn.Embedding(10, 6), nn.Linear(6, 10, bias=False)
    head.weight = emb.weight  # tied, as in many LMs
    model = nn.ModuleDict({"emb": emb, "head": head})
    snap = snapshot(model)
    with pytest.raises(LoralabError, match="'head', which is shared with 'emb.weight'"):
        inject_lora(model, AdapterConfig(r=2, target_modules=["head"], init_lora_weights="pissa"))
    assert_same(model, snap)
    inject_lora(model, AdapterConfig(r=2, target_modules=["head"]))
    randomize(model)
    before = emb.weight.detach().clone()
    with pytest.raises(LoralabError, match="'head' is shared with 'emb.weight'"):
        merge_lora(model)
    with pytest.raises(LoralabError, match="keep this model unmerged"):
        unload_lora(model)
    assert torch.equal(emb.weight, before) and not model["head"].merged


def test_multihead_attention_out_proj_is_refused() -> None:
    model = nn.Sequential(nn.MultiheadAttention(8, 2))
    with pytest.raises(LoralabError, match="'0.out_proj' belongs to an nn.MultiheadAttention"):
        inject_lora(model, AdapterConfig(target_modules=["out_proj"]))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"r": 0}, "r=0"), ({"r": 2.5}, "r=2.5"), ({"r": True}, "r=True"),
    ({"lora_alpha": 0}, "lora_alpha=0"), ({"lora_alpha": float("nan")}, "lora_alpha=nan"),
    ({"lora_dropout": 1.0}, "lora_dropout=1.0"), ({"lora_dropout": -0.1}, "lora_dropout=-0.1"),
    ({"init_lora_weights": "eva"}, "init_lora_weights='eva'"),
    ({"init_lora_weights": "pissa_niter_0"}, "pissa_niter_0"),
    ({"bias": "some"}, "bias='some'"), ({"layers_to_transform": "0"}, "layers_to_transform"),
    ({"rank_pattern": {"q": 0}}, "rank_pattern"), ({"task_type": "CLS"}, "task_type='CLS'"),
    ({"use_rslora": 1}, "use_rslora=1"), ({"target_modules": None}, "target_modules=None"),
    ({"target_modules": []}, "target_modules=\\[\\]"), ({"target_modules": "("}, "regex"),
    ({"exclude_modules": "all-linear"}, "all-linear"), ({"target_modules": [""]}, "non-empty"),
])
def test_config_validation(kwargs: dict, match: str) -> None:
    args = {"target_modules": ["q_proj"], **kwargs}
    with pytest.raises(LoralabError, match=match):
        AdapterConfig(**args)


def test_layer_rejects_non_linear() -> None:
    with pytest.raises(LoralabError, match="wraps an nn.Linear or a Conv1D, got Conv1d"):
        LoRALinear(nn.Conv1d(2, 2, 1), r=1, lora_alpha=1)  # type: ignore[arg-type]


# ---------------------------------------------------------------- model-level helpers

def test_merge_unmerge_unload_model(model: Tiny) -> None:
    x = torch.randn(4, 8)
    w_head = model.head.weight.detach().clone()
    inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj", "head"]))
    randomize(model)
    y = model(x)
    assert merge_lora(model).keys() == set(lora_layers(model))
    torch.testing.assert_close(model(x), y, rtol=0, atol=1e-5)
    unmerge_lora(model)
    torch.testing.assert_close(model.head.base.weight, w_head, rtol=0, atol=1e-6)
    out = unload_lora(model)
    assert out is model and not lora_layers(model)
    assert type(model.head) is nn.Linear and type(model.layers[0].q_proj) is nn.Linear
    torch.testing.assert_close(model(x), y, rtol=0, atol=1e-5)


def test_lora_state_dict(model: Tiny) -> None:
    inject_lora(model, AdapterConfig(r=3, target_modules=["v_proj"]))
    sd = lora_state_dict(model)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        f"layers.{i}.v_proj.lora_{ab}.weight": ((3, 8) if ab == "A" else (8, 3))
        for i in (0, 1) for ab in "AB"}
    assert not any(v.requires_grad for v in sd.values())


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_counts_equal_peft(model: Tiny, bias: str, capsys: pytest.CaptureFixture) -> None:
    from peft import LoraConfig, get_peft_model

    twin = get_peft_model(copy.deepcopy(model),
                          LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "mlp.0"],
                                     bias=bias))
    inject_lora(model, AdapterConfig(r=2, lora_alpha=4, target_modules=["q_proj", "mlp.0"],
                                     bias=bias))
    count = count_parameters(model)
    assert (count.trainable, count.total) == twin.get_nb_trainable_parameters()
    assert count.percent == pytest.approx(100 * count.trainable / count.total)
    twin.print_trainable_parameters()
    assert format_parameter_count(count) == capsys.readouterr().out.strip()


def test_float64_merge_is_not_rounded_through_float32():
    """Merging a float64 layer stays in float64: merged = unmerged and unmerge restores W0
    to float64 precision (a float32 round trip would leave ~1e-7)."""
    torch.manual_seed(0)
    base = nn.Linear(64, 32).double()
    layer = LoRALinear(base, r=4, lora_alpha=8.0)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    w0 = base.weight.detach().clone()
    x = torch.randn(5, 64, dtype=torch.float64)
    y = layer(x)
    layer.merge()
    assert (layer(x) - y).abs().max().item() < 1e-12
    layer.unmerge()
    assert (base.weight - w0).abs().max().item() < 1e-12
