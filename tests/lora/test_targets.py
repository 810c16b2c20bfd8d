"""Which modules get LoRA (loralab.lora.targets): PEFT's matching rules and the refusals."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
from lora_tiny import Tiny, assert_same, snapshot  # noqa: E402
from torch import nn  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    inject_lora,
    lora_layers,
)


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


def test_shared_module_is_refused() -> None:
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), lin)
    with pytest.raises(LoralabError, match="also reachable as '2'"):
        inject_lora(model, AdapterConfig(target_modules=["0"]))


def test_multihead_attention_out_proj_is_refused() -> None:
    model = nn.Sequential(nn.MultiheadAttention(8, 2))
    with pytest.raises(LoralabError, match="'0.out_proj' belongs to an nn.MultiheadAttention"):
        inject_lora(model, AdapterConfig(target_modules=["out_proj"]))
