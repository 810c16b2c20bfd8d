"""Adapters that carry full weights (PEFT's ``save_embedding_layers``), PEFT 0.21 the oracle.

A tiny Llama saved to a folder (its ``config.json`` is the base's vocabulary), reloaded and
grown by 6 tokens (``resize_token_embeddings``): PEFT's file with the embedding's own weight
loads into loralab, loralab's loads into PEFT, with the same key set and equal logits (the
loading model's new rows are drawn with another seed, so only the file can make them agree).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from peft_parity import max_diff, tol, train_like  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
    inject_lora,
    load_adapter,
    lora_layers,
    merge_lora,
    save_adapter,
    unload_lora,
    unmerge_lora,
)

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]
OLD, NEW = 64, 70
IDS = torch.randint(0, NEW, (2, 9), generator=torch.Generator().manual_seed(3))
OLD_IDS = IDS % OLD


def _base(folder: Path, tie: bool) -> Path:
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        cfg = transformers.LlamaConfig(vocab_size=OLD, hidden_size=32, intermediate_size=48,
                                       num_hidden_layers=1, num_attention_heads=4,
                                       num_key_value_heads=2, max_position_embeddings=32,
                                       tie_word_embeddings=tie)
        transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def _model(folder: Path, grow_seed: int | None):
    model = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    if grow_seed is not None:
        torch.manual_seed(grow_seed)
        model.resize_token_embeddings(NEW)
    return model


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _full_keys(folder: Path) -> list[str]:
    return sorted(k for k in load_file(folder / "adapter_model.safetensors") if "lora_" not in k)


# (name, tie_word_embeddings, target_modules, ids that the saved weights determine, keys)
CASES = [
    ("embed_tokens targeted, tied head", True, ["embed_tokens", "q_proj"], IDS,
     ["model.embed_tokens.base_layer.weight"]),
    ("lm_head targeted, untied", False, ["q_proj", "lm_head"], OLD_IDS,
     ["lm_head.base_layer.weight"]),
    ("vocabulary resized, nothing embedding targeted", False, ["q_proj"], IDS,
     ["lm_head.weight", "model.embed_tokens.weight"]),
]


TOKENS = {"trainable_token_indices": [64, 65]}
CASES += [
    ("vocabulary resized + trainable tokens, tied", True, ["q_proj"], IDS,
     ["lm_head.token_adapter.base_layer.weight", "lm_head.token_adapter.trainable_tokens_delta",
      "model.embed_tokens.token_adapter.base_layer.weight",
      "model.embed_tokens.token_adapter.trainable_tokens_delta"]),
    ("vocabulary resized + trainable tokens, untied", False, ["q_proj"], IDS,
     ["lm_head.weight", "model.embed_tokens.token_adapter.base_layer.weight",
      "model.embed_tokens.token_adapter.trainable_tokens_delta"]),
]


def _fields(name: str, targets: list[str]) -> dict:
    extra = TOKENS if "trainable tokens" in name else {}
    return {"r": 2, "target_modules": list(targets), **extra}


@pytest.mark.parametrize(("name", "tie", "targets", "ids", "keys"), CASES,
                         ids=[c[0] for c in CASES])
def test_full_weights_both_directions(name, tie, targets, ids, keys, tmp_path: Path) -> None:
    base = _base(tmp_path / "base", tie)
    theirs = peft.get_peft_model(_model(base, 1), peft.LoraConfig(**_fields(name, targets)))
    train_like(theirs)
    theirs.save_pretrained(tmp_path / "peft")
    assert _full_keys(tmp_path / "peft") == [f"base_model.model.{k}" for k in keys]
    ours = _model(base, 2)                                 # other new rows
    assert max_diff(_logits(ours, ids), _logits(theirs, ids)) > 1e-3
    load_adapter(ours, tmp_path / "peft")
    y = _logits(theirs, ids)
    assert max_diff(_logits(ours, ids), y) <= tol(y)
    if "trainable tokens" in name:          # unmerge restores the table as loaded
        before = {k: v.clone() for k, v in ours.state_dict().items()}
        merge_lora(ours)
        assert max_diff(_logits(ours, ids), y) <= tol(y)
        unmerge_lora(ours)
        assert all(max_diff(v, before[k]) <= 1e-6 for k, v in ours.state_dict().items())
        emb = ours.model.embed_tokens
        assert torch.equal(emb.base.weight, before["model.embed_tokens.base.weight"])
    mine = _model(base, 3)
    inject_lora(mine, AdapterConfig(**_fields(name, targets)))
    train_like(mine)
    save_adapter(mine, tmp_path / "ours")
    assert _full_keys(tmp_path / "ours") == _full_keys(tmp_path / "peft")
    back = peft.PeftModel.from_pretrained(_model(base, 4), tmp_path / "ours").eval()
    y = _logits(mine, ids)
    assert max_diff(_logits(back, ids), y) <= tol(y)
    if not tie or "trainable tokens" in name:
        merged = unload_lora(mine)
        assert not lora_layers(merged) and max_diff(_logits(merged, ids), y) <= tol(y)


def test_save_embedding_layers_values(tmp_path: Path) -> None:
    base = _base(tmp_path / "base", False)
    model = _model(base, None)                             # not resized
    inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj"]))
    save_adapter(model, tmp_path / "auto")
    assert _full_keys(tmp_path / "auto") == []             # nothing to carry
    save_adapter(model, tmp_path / "yes", save_embedding_layers=True)
    assert _full_keys(tmp_path / "yes") == ["base_model.model.lm_head.weight",
                                            "base_model.model.model.embed_tokens.weight"]
    model.save_pretrained(tmp_path / "hf", save_embedding_layers=True)
    assert _full_keys(tmp_path / "hf") == _full_keys(tmp_path / "yes")
    emb = _model(base, None)
    inject_lora(emb, AdapterConfig(r=2, target_modules=["embed_tokens"]))
    save_adapter(emb, tmp_path / "no", save_embedding_layers=False)
    assert _full_keys(tmp_path / "no") == []
    with pytest.raises(LoralabError, match="save_embedding_layers='yes' is not allowed"):
        save_adapter(emb, tmp_path / "bad", save_embedding_layers="yes")  # type: ignore[arg-type]
    assert not (tmp_path / "bad").exists()


def test_a_grown_vocabulary_needs_the_model_resized_first(tmp_path: Path) -> None:
    base = _base(tmp_path / "base", True)
    theirs = peft.get_peft_model(_model(base, 1), peft.LoraConfig(
        r=2, target_modules=["embed_tokens", "q_proj"]))
    theirs.save_pretrained(tmp_path / "peft")
    ours = _model(base, None)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(LoralabError, match=r"70 tokens.*has 64.*resize_token_embeddings\(70\)"):
        load_adapter(ours, tmp_path / "peft")
    assert not lora_layers(ours)
    assert all(torch.equal(v, before[k]) for k, v in ours.state_dict().items())


def test_auto_on_a_plain_module_saves_no_embedding_and_true_is_refused(tmp_path: Path) -> None:
    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed_tokens = torch.nn.Embedding(10, 4)
            self.lm_head = torch.nn.Linear(4, 10)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.lm_head(self.embed_tokens(ids))

    model = Plain()
    inject_lora(model, AdapterConfig(r=2, target_modules=["embed_tokens", "lm_head"]))
    save_adapter(model, tmp_path / "auto")                   # PEFT: a warning, no weights
    assert _full_keys(tmp_path / "auto") == []
    with pytest.raises(LoralabError, match="save_embedding_layers=True needs a model with"):
        save_adapter(model, tmp_path / "true", save_embedding_layers=True)
    assert not (tmp_path / "true").exists()
