"""``shrink_adapter`` against numpy's SVD and PEFT 0.21 (tiny Llama, GPT-2, a conv net).

A trained adapter is saved, shrunk, and the new folder loaded by PEFT: each module's update
in PEFT equals numpy's best rank-r′ approximation of the original ``ΔW`` (Eckart–Young),
the printed prediction equals numpy's tail ``√Σ_{i>r′} σ_i²``, the measured error equals it,
and at full rank PEFT's logits are the original's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

peft = pytest.importorskip("peft")
pytest.importorskip("transformers")

from test_transformers import conv_net, gpt2, llama, logits, train_like  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import AdapterConfig, inject_lora, load_adapter, lora_layers, save_adapter  # noqa: E402,E501
from loralab.lora.shrink import keep_rank, shrink_adapter  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CASES = {
    "llama rank_pattern + embedding": (llama, {"target_modules": ["q_proj", "v_proj",
                                                                  "embed_tokens"],
                                               "rank_pattern": {"v_proj": 6}}),
    "gpt2 Conv1D rsLoRA lora_bias": (gpt2, {"target_modules": ["c_attn"], "fan_in_fan_out": True,
                                            "use_rslora": True, "lora_bias": True}),
    "conv net": (conv_net, {"target_modules": ["c1", "c2", "p"]}),
}


def trained(tmp_path: Path, case: str) -> tuple[nn.Module, Path]:
    make, fields = CASES[case]
    model = make()
    inject_lora(model, AdapterConfig(r=8, lora_alpha=16, **fields))
    train_like(model)
    save_adapter(model, tmp_path / "src")
    return model, tmp_path / "src"


def exact_delta(layer: nn.Module) -> np.ndarray:
    """s·B A in float64 numpy, a kernel flattened to (C_out, C_in·k…)."""
    a, b = (t.detach().double().flatten(1).numpy() for t in layer.factors())
    return layer.scaling["default"] * b @ a


def numpy_best(delta: np.ndarray, r: int) -> tuple[np.ndarray, float]:
    u, s, vh = np.linalg.svd(delta, full_matrices=False)
    return (u[:, :r] * s[:r]) @ vh[:r], float(np.sqrt(np.sum(s[r:] ** 2)))


@pytest.mark.parametrize("case", list(CASES))
def test_shrunk_modules_are_numpys_best_rank_r_and_peft_loads_them(case: str,
                                                                   tmp_path: Path) -> None:
    model, src = trained(tmp_path, case)
    result = shrink_adapter(src, tmp_path / "r3", rank=3)
    theirs = peft.PeftModel.from_pretrained(CASES[case][0](), tmp_path / "r3").eval()
    layers = lora_layers(model)
    assert {m.path for m in result.modules} == set(layers)
    for rec in result.modules:
        old = exact_delta(layers[rec.path])
        want, tail = numpy_best(old, 3)
        peft_layer = theirs.base_model.model.get_submodule(rec.path)
        got = peft_layer.get_delta_weight("default").detach().double()
        got = got.T if getattr(peft_layer, "fan_in_fan_out", False) or "embed" in rec.path \
            else got
        np.testing.assert_allclose(got.flatten(1).numpy(), want, atol=1e-5 * np.abs(want).max())
        assert rec.new_rank == min(3, rec.rank)
        assert rec.predicted == pytest.approx(tail, rel=1e-9, abs=1e-12)
        assert rec.measured == pytest.approx(tail, rel=1e-5, abs=1e-5)
        assert rec.norm == pytest.approx(float(np.linalg.norm(old)), rel=1e-9)
    ours = CASES[case][0]()
    load_adapter(ours, tmp_path / "r3")
    torch.testing.assert_close(logits(ours, CASES[case][0]), logits(theirs, CASES[case][0]),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", list(CASES))
def test_full_rank_is_the_same_adapter_in_peft(case: str, tmp_path: Path) -> None:
    model, src = trained(tmp_path, case)
    result = shrink_adapter(src, tmp_path / "full", energy=1.0)
    assert all(m.predicted < 1e-6 * m.norm for m in result.modules)
    theirs = peft.PeftModel.from_pretrained(CASES[case][0](), tmp_path / "full").eval()
    make = CASES[case][0]
    torch.testing.assert_close(logits(theirs, make), logits(model, make), atol=1e-5, rtol=1e-5)


def test_energy_picks_each_modules_smallest_rank(tmp_path: Path) -> None:
    model, src = trained(tmp_path, "llama rank_pattern + embedding")
    result = shrink_adapter(src, tmp_path / "e", energy=0.8)
    layers = lora_layers(model)
    for rec in result.modules:
        s = np.linalg.svd(exact_delta(layers[rec.path]), compute_uv=False)
        share = np.cumsum(s ** 2) / np.sum(s ** 2)
        assert rec.new_rank == int(np.argmax(share >= 0.8)) + 1
        assert rec.kept >= 0.8 > (share[rec.new_rank - 2] if rec.new_rank > 1 else 0)
    cfg = json.loads((tmp_path / "e" / "adapter_config.json").read_text())
    ranks = {m.new_rank for m in result.modules}
    assert cfg["r"] == cfg["lora_alpha"] == max(ranks) and not cfg["use_rslora"]
    assert set(cfg["rank_pattern"].values()) <= ranks


def test_keep_rank_reads_the_cumulative_energy() -> None:
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])              # energies 9, 4, 1 of 14
    assert [keep_rank(s, None, e) for e in (0.5, 9 / 14, 0.7, 13 / 14, 0.99, 1.0)] == \
        [1, 1, 2, 2, 3, 3]
    assert keep_rank(s, 2, None) == 2 and keep_rank(s, 9, None) == 4


def test_bad_requests_name_the_value_and_create_nothing(tmp_path: Path) -> None:
    _, src = trained(tmp_path, "llama rank_pattern + embedding")
    (tmp_path / "taken").mkdir()
    cases = [({"rank": 0}, "rank=0 is not allowed; give an integer from 1 to the adapter's "
                           r"rank \(8\)"),
             ({"rank": 9}, "rank=9 is not allowed"),
             ({"energy": 0.0}, "energy=0.0 is not allowed"),
             ({"energy": 1.2}, "energy=1.2 is not allowed"),
             ({"rank": 2, "energy": 0.5}, "exactly one of rank"),
             ({}, "exactly one of rank")]
    for kw, match in cases:
        with pytest.raises(LoralabError, match=match):
            shrink_adapter(src, tmp_path / "new", **kw)
    with pytest.raises(LoralabError, match="'.*taken' already exists; loralab does not"):
        shrink_adapter(src, tmp_path / "taken", rank=2)
    with pytest.raises(LoralabError, match="adapter folder '.*nope' does not exist"):
        shrink_adapter(tmp_path / "nope", tmp_path / "new", rank=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "taken"]
    assert not list((tmp_path / "taken").iterdir())


def test_dora_is_refused(tmp_path: Path) -> None:
    model = llama()
    inject_lora(model, AdapterConfig(r=4, target_modules=["q_proj"], use_dora=True))
    save_adapter(model, tmp_path / "d")
    with pytest.raises(LoralabError, match="uses DoRA"):
        shrink_adapter(tmp_path / "d", tmp_path / "o", rank=2)
    assert not (tmp_path / "o").exists()


def test_a_peft_made_adapter_with_a_saved_head_shrinks_and_loads_back(tmp_path: Path) -> None:
    theirs = peft.get_peft_model(llama(), peft.LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"]))
    train_like(theirs)
    theirs.save_pretrained(tmp_path / "p")
    result = shrink_adapter(tmp_path / "p", tmp_path / "full", energy=1.0)
    assert len(result.modules) == 4
    back = peft.PeftModel.from_pretrained(llama(), tmp_path / "full").eval()
    torch.testing.assert_close(logits(back, llama), logits(theirs.eval(), llama), atol=1e-5,
                               rtol=1e-5)
