"""Adapters on disk: PEFT reads ours, we read PEFT's, same outputs; bad files change nothing."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.blk = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 8))
        self.out = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blk(self.q(x)))


@pytest.fixture
def base() -> Net:
    torch.manual_seed(0)
    return Net()


def train_like(model: nn.Module, seed: int = 1) -> None:
    """Change every trainable parameter, as training would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)


def snapshot(model: nn.Module) -> tuple:
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(n, type(m).__name__) for n, m in model.named_modules()],
            {n: p.requires_grad for n, p in model.named_parameters()})


def assert_same(model: nn.Module, snap: tuple) -> None:
    state, kinds, grads = snap
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == kinds
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    now = model.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


CASES = [  # (target_modules, init, bias, use_rslora)
    (["q", "blk.0"], True, "none", False),
    (["q", "blk.0"], True, "none", True),
    (r"blk\.[02]", "gaussian", "all", False),
    (["q", "out"], True, "lora_only", True),
    (["q", "blk.2"], "pissa", "none", False),
]


@pytest.mark.parametrize(("targets", "init", "bias", "rslora"), CASES)
def test_ours_to_peft_and_back(base: Net, tmp_path: Path, targets, init, bias, rslora) -> None:
    from peft import PeftModel

    x = torch.randn(5, 8)
    model = copy.deepcopy(base)
    inject_lora(model, AdapterConfig(r=3, lora_alpha=5, target_modules=targets,
                                     init_lora_weights=init, bias=bias, use_rslora=rslora))
    train_like(model)
    y = model(x)
    save_adapter(model, tmp_path / "ours")
    cfg = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert (cfg["peft_type"], cfg["r"], cfg["lora_alpha"], cfg["use_rslora"], cfg["bias"]) == (
        "LORA", 3, 5, rslora, bias)
    assert cfg["target_modules"] == targets
    peft_model = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours")
    torch.testing.assert_close(peft_model(x), y, rtol=0, atol=1e-5)
    ours = copy.deepcopy(base)
    load_adapter(ours, tmp_path / "ours")
    torch.testing.assert_close(ours(x), y, rtol=0, atol=1e-6)
    # PEFT saves it again; the files hold the same tensors under the same keys
    peft_model.save_pretrained(tmp_path / "peft")
    a = load_file(tmp_path / "ours" / "adapter_model.safetensors")
    b = load_file(tmp_path / "peft" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    from_peft = copy.deepcopy(base)
    load_adapter(from_peft, tmp_path / "peft")
    torch.testing.assert_close(from_peft(x), y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("rslora", [False, True])
def test_peft_to_ours(base: Net, tmp_path: Path, rslora: bool) -> None:
    from peft import LoraConfig, get_peft_model

    x = torch.randn(5, 8)
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(
        r=2, lora_alpha=7, target_modules=["q", "blk.2"], use_rslora=rslora, lora_dropout=0.1))
    train_like(peft_model)
    peft_model.eval()
    y = peft_model(x)
    peft_model.save_pretrained(tmp_path)
    ours = copy.deepcopy(base)
    torch.manual_seed(123)
    assert load_adapter(ours, tmp_path) == ["q", "blk.2"]
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))  # loading leaves the global RNG alone
    assert ours.q.scaling["default"] == pytest.approx(7 / 2**0.5 if rslora else 7 / 2)
    assert ours.q.dropout_p("default") == pytest.approx(0.1)
    torch.testing.assert_close(ours.eval()(x), y, rtol=0, atol=1e-6)
    # fill an already injected model (ours with other weights in it)
    again = copy.deepcopy(base)
    inject_lora(again, AdapterConfig(r=2, lora_alpha=1, target_modules=["q", "blk.2"]))
    load_adapter(again, tmp_path)
    torch.testing.assert_close(again.eval()(x), y, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("rslora", [False, True])
def test_transformers_llama_round_trip(llama: nn.Module, tmp_path: Path, rslora: bool) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model

    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(0))
    model = copy.deepcopy(llama)
    names = inject_lora(model, AdapterConfig(r=4, lora_alpha=8, use_rslora=rslora,
                                             target_modules=["q_proj", "v_proj", "down_proj"]))
    assert len(names) == 6 and "model.layers.1.mlp.down_proj" in names
    train_like(model)
    with torch.no_grad():
        y = model(ids).logits
        save_adapter(model, tmp_path / "ours")
        peft_model = PeftModel.from_pretrained(copy.deepcopy(llama), tmp_path / "ours")
        torch.testing.assert_close(peft_model(ids).logits, y, rtol=0, atol=1e-5)
        # PEFT -> ours, regex target_modules
        twin = get_peft_model(copy.deepcopy(llama), LoraConfig(
            r=2, lora_alpha=3, use_rslora=rslora, target_modules=r".*\.(k|o)_proj"))
        train_like(twin)
        twin.save_pretrained(tmp_path / "peft")
        ours = copy.deepcopy(llama)
        assert len(load_adapter(ours, tmp_path / "peft")) == 4
        torch.testing.assert_close(ours(ids).logits, twin(ids).logits, rtol=0, atol=1e-5)


def test_save_into_existing_folder_keeps_other_files(base: Net, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("mine")
    inject_lora(base, AdapterConfig(r=2, target_modules=["q"]))
    save_adapter(base, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors"]


def test_save_errors(base: Net, tmp_path: Path) -> None:
    with pytest.raises(LoralabError, match="no LoRA layers"):
        save_adapter(base, tmp_path / "a")
    inject_lora(base, AdapterConfig(r=2, target_modules=["q"]))
    with pytest.raises(LoralabError, match="adapter 'nope' is not allowed"):
        save_adapter(base, tmp_path / "a", adapter_name="nope")
    assert not (tmp_path / "a").exists()


@pytest.fixture
def saved(base: Net, tmp_path: Path) -> Path:
    model = copy.deepcopy(base)
    inject_lora(model, AdapterConfig(r=2, lora_alpha=4, target_modules=["q", "blk.0"]))
    train_like(model)
    return save_adapter(model, tmp_path / "adapter")


def edit_tensors(folder: Path, fn) -> None:
    path = folder / "adapter_model.safetensors"
    tensors = load_file(path)
    fn(tensors)
    save_file(tensors, path)


def edit_config(folder: Path, **changes) -> None:
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("injected", [False, True])
@pytest.mark.parametrize(("breakage", "match"), [
    (lambda d: edit_tensors(d, lambda t: t.update({
        "base_model.model.blk.0.lora_B.weight": torch.zeros(5, 2)})),
     r"'base_model.model.blk.0.lora_B.weight' has shape \(5, 2\) but the model expects "
     r"\(6, 2\)"),
    (lambda d: edit_tensors(d, lambda t: t.pop("base_model.model.q.lora_A.weight")),
     r"no key 'base_model.model.q.lora_A.weight' \(expected shape \(2, 8\)\)"),
    (lambda d: edit_tensors(d, lambda t: t.update({
        "base_model.model.zz.lora_A.weight": torch.zeros(2, 8)})),
     "'base_model.model.zz.lora_A.weight' matches no LoRA layer"),
    (lambda d: edit_config(d, r=3), r"has shape \(2, 8\) but .*expects \(3, 8\)"),
    (lambda d: edit_config(d, use_dora=True), "lora_magnitude_vector|use_dora=True"),
    (lambda d: edit_config(d, layer_replication=[[0, 1]]), "layer_replication=.* not supported"),
    (lambda d: edit_config(d, rank_pattern={"q": 4}), r"has shape \(2, 8\) but .*expects \(4, 8\)"),
    (lambda d: edit_config(d, init_lora_weights="eva"), "init_lora_weights='eva'"),
    (lambda d: edit_config(d, peft_type="IA3"), "peft_type='IA3'"),
    (lambda d: edit_config(d, lora_alpha=-1), "lora_alpha=-1"),
    (lambda d: (d / "adapter_config.json").write_text("{oops"), "not valid JSON"),
    (lambda d: (d / "adapter_model.safetensors").write_bytes(b"junk"), "not a readable"),
    (lambda d: (d / "adapter_model.safetensors").rename(d / "adapter_model.bin"),
     "adapter_model.bin is a pickle and is never loaded"),
])
def test_bad_adapter_leaves_model_unchanged(base: Net, saved: Path, breakage, match: str,
                                            injected: bool) -> None:
    model = copy.deepcopy(base)
    if injected:
        inject_lora(model, AdapterConfig(r=2, lora_alpha=4, target_modules=["q", "blk.0"]))
    breakage(saved)
    snap = snapshot(model)
    with pytest.raises(LoralabError, match=match):
        load_adapter(model, saved)
    assert_same(model, snap)


def test_load_errors_without_breakage(base: Net, saved: Path, tmp_path: Path) -> None:
    with pytest.raises(LoralabError, match="does not exist"):
        load_adapter(base, tmp_path / "nope")
    model = copy.deepcopy(base)
    inject_lora(model, AdapterConfig(r=2, lora_alpha=4, target_modules=["q", "blk.0"]))
    merge_lora(model)
    snap = snapshot(model)
    with pytest.raises(LoralabError, match="'blk.0' is merged"):
        load_adapter(model, saved)
    assert_same(model, snap)
    other = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(LoralabError, match="matches no module"):
        load_adapter(other, saved)
    assert not lora_layers(other)


def test_adapter_of_another_rank_into_an_injected_model_changes_nothing(base: Net,
                                                                       tmp_path: Path) -> None:
    """The issue's case: an r=4 adapter into a model injected at r=2 (and one with mixed
    ranks and a trained bias) is refused before the first write."""
    donor = copy.deepcopy(base)
    inject_lora(donor, AdapterConfig(r=4, lora_alpha=8, target_modules=["q", "blk.0"],
                                     bias="lora_only"))
    train_like(donor)
    save_adapter(donor, tmp_path / "r4")
    for config in (AdapterConfig(r=2, target_modules=["q", "blk.0"]),
                   AdapterConfig(r=4, target_modules=["q", "blk.0"], rank_pattern={"q": 2},
                                 bias="lora_only")):
        model = copy.deepcopy(base)
        inject_lora(model, config)
        train_like(model, seed=3)
        snap = snapshot(model)
        with pytest.raises(LoralabError, match="has shape"):
            load_adapter(model, tmp_path / "r4")
        assert_same(model, snap)
