"""Conv1d/2d/3d, grouped convolutions and DoRA on Embedding and convolutions, PEFT 0.21 the
oracle: a PEFT adapter loads into loralab and a loralab one into PEFT with equal outputs
(tolerance scaled to the outputs' size), merged equals unmerged and PEFT's
``merge_and_unload``, unmerge restores the weights, and what PEFT refuses is refused by name.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

from peft_parity import (  # noqa: E402
    conv_net3,
    from_peft,
    max_diff,
    merge_checks,
    out,
    to_peft,
    tol,
    train_like,
)

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    LoRAConv,
    LoRAEmbedding,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    set_adapter,
    unload,
    unload_lora,
)

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

ALL = ["emb", "c1", "c2", "c3", "p"]
CASES = [
    ("Conv1d/2d/3d + Embedding", {"target_modules": ALL}),
    ("DoRA on Embedding and Conv1d/2d/3d", {"target_modules": ALL, "use_dora": True}),
    ("Conv3d alone, rsLoRA", {"target_modules": ["c3"], "use_rslora": True}),
    ("convs + lora_bias", {"target_modules": ["c1", "c2", "c3"], "lora_bias": True}),
    ("DoRA Conv3d + modules_to_save", {"target_modules": ["c3"], "use_dora": True,
                                       "modules_to_save": ["p"]}),
    ("DoRA + rank/alpha patterns", {"target_modules": ["emb", "c2", "c3"], "use_dora": True,
                                    "rank_pattern": {"c3": 2}, "alpha_pattern": {"emb": 3}}),
]
IDS = [c[0] for c in CASES]


def _fields(extra: dict) -> dict:
    return {"r": 4, "lora_alpha": 8, **extra}


@pytest.mark.parametrize(("name", "fields"), CASES, ids=IDS)
def test_peft_file_loads_into_loralab_and_merges(name, fields, tmp_path: Path) -> None:
    diff, ours, theirs = from_peft(conv_net3, _fields(fields), tmp_path)
    assert diff <= tol(out(theirs))
    assert max_diff(out(ours), out(conv_net3())) > 1e-3               # the adapter acts
    merged = unload_lora(ours)
    ref = theirs.merge_and_unload()
    sd_t, sd_o = ref.state_dict(), merged.state_dict()
    assert sd_t.keys() == sd_o.keys()
    assert max(max_diff(sd_t[k], sd_o[k]) for k in sd_t) <= tol(torch.cat(
        [v.flatten() for v in sd_t.values()]))


@pytest.mark.parametrize(("name", "fields"), CASES, ids=IDS)
def test_loralab_file_loads_into_peft_merge_unmerge_unload(name, fields, tmp_path: Path
                                                           ) -> None:
    diff, ours, theirs = to_peft(conv_net3, _fields(fields), tmp_path)
    y = out(ours)
    assert diff <= tol(y)
    merged, restored = merge_checks(ours)
    assert merged <= tol(y)
    assert restored <= 1e-6
    assert not lora_layers(ours)


def test_dora_magnitude_has_peft_shapes() -> None:
    model = conv_net3()
    inject_lora(model, AdapterConfig(r=2, target_modules=ALL, use_dora=True))
    shapes = {n: tuple(m.lora_magnitude_vector["default"].shape)
              for n, m in lora_layers(model).items()}
    assert shapes == {"emb": (4,), "c1": (1, 6, 1), "c2": (1, 8, 1, 1),
                      "c3": (1, 4, 1, 1, 1), "p": (1, 4, 1, 1)}
    emb = model.emb
    assert isinstance(emb, LoRAEmbedding)
    # m starts at ‖W0‖ per embedding dimension (a column of the (V, d) table)
    torch.testing.assert_close(emb.magnitude("default"),
                               torch.linalg.norm(emb.base.weight.detach(), dim=0))


def test_dora_embedding_forward_is_the_effective_table() -> None:
    torch.manual_seed(0)
    layer = LoRAEmbedding(nn.Embedding(9, 5), r=2, lora_alpha=4, use_dora=True)
    with torch.no_grad():
        for t in (*layer.factors(), layer.lora_magnitude_vector["default"]):
            t.add_(torch.randn(t.shape) * 0.3)
    ids = torch.tensor([[0, 3, 8, 3]])
    table = layer.effective_weight().t()                       # (V, d)
    torch.testing.assert_close(layer(ids), table[ids], rtol=1e-5, atol=1e-6)


def test_grouped_conv_trains_and_round_trips_but_merge_is_refused(tmp_path: Path) -> None:
    make = lambda: conv_net3(groups=2)  # noqa: E731
    fields = _fields({"target_modules": ["c2", "c3"]})
    diff, ours, theirs = from_peft(make, fields, tmp_path / "theirs")
    assert diff <= tol(out(theirs))
    with pytest.raises(NotImplementedError):                   # PEFT refuses, raw
        theirs.merge_and_unload()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(LoralabError, match=r"'c2'.*grouped Conv2d \(groups=2\)"):
        merge_lora(ours)
    with pytest.raises(LoralabError, match="grouped Conv2d"):
        unload_lora(ours)
    after = ours.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)   # nothing merged
    assert max_diff(out(unload(ours)), out(make())) == 0.0
    diff, _, _ = to_peft(make, fields, tmp_path / "ours")
    assert diff <= tol(out(theirs))


def test_grouped_conv_refusals_name_the_field_and_layer(tmp_path: Path) -> None:
    with pytest.raises(LoralabError, match=r"r=3 on a Conv2d with groups=2.*divisible"):
        inject_lora(conv_net3(groups=2), AdapterConfig(r=3, target_modules=["c2"]))
    with pytest.raises(LoralabError, match=r"use_dora=True.*grouped Conv2d \(groups=2\)"):
        LoRAConv(nn.Conv2d(4, 4, 3, groups=2), r=2, lora_alpha=2, use_dora=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(conv_net3(groups=2), peft.LoraConfig(
            r=4, target_modules=["c2"], use_dora=True))    # PEFT takes it; its norm is wrong
    theirs.save_pretrained(tmp_path)
    ours = conv_net3(groups=2)
    with pytest.raises(LoralabError, match=r"'c2'.*use_dora=True.*grouped Conv2d"):
        load_adapter(ours, tmp_path)
    assert not lora_layers(ours)


def test_dora_gradients_equal_peft(tmp_path: Path) -> None:
    """The detached norm and the magnitude's gradient, per layer type, against PEFT."""
    fields = _fields({"target_modules": ALL, "use_dora": True})
    _, ours, theirs = from_peft(conv_net3, fields, tmp_path)
    grads = []
    for model in (ours, theirs):
        model.train()
        model(torch.randint(0, 10, (2, 7), generator=torch.Generator().manual_seed(5))
              ).pow(2).sum().backward()
        grads.append({n.removeprefix("base_model.model.").removesuffix(".weight")
                      .replace(".weight", ""): p.grad for n, p in model.named_parameters()
                      if p.requires_grad})
    mine, peft_grads = grads
    assert len(mine) == len(peft_grads) == 15                      # A, B, m on 5 layers
    for name, g in mine.items():
        ref = peft_grads[name.replace(".weight", "")]
        torch.testing.assert_close(g.reshape(ref.shape), ref, rtol=1e-4,
                                   atol=1e-5 * float(ref.abs().max()))


def test_two_named_dora_adapters_from_peft(tmp_path: Path) -> None:
    fields = _fields({"target_modules": ["emb", "c2", "c3"], "use_dora": True})
    theirs = peft.get_peft_model(conv_net3(), peft.LoraConfig(**fields))
    theirs.add_adapter("other", peft.LoraConfig(**{**fields, "r": 2}))
    train_like(theirs)
    theirs.save_pretrained(tmp_path)
    ours = conv_net3()
    load_adapter(ours, tmp_path)
    load_adapter(ours, tmp_path / "other", adapter_name="other")
    seen = []
    for name in ("default", "other"):
        theirs.set_adapter(name)
        set_adapter(ours, name)
        y = out(theirs)
        assert max_diff(out(ours), y) <= tol(y)
        seen.append(y)
    assert max_diff(*seen) > 1e-3
