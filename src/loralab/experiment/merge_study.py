"""Two trained adapters merged every way ``add_weighted_adapter`` knows (the merge study).

A small random-init :class:`~loralab.lm.model.TinyLM` (d = 64, 2 layers) gets two LoRA
adapters, r = 8 on every attention and MLP projection, each trained for a few AdamW steps on
its own text: ``"english"`` on plain English, ``"piglatin"`` on Pig Latin. Then
:func:`loralab.lora.merge_error.merge_errors` scores every combination of
``0.6·english + 0.4·piglatin`` against the exact weighted sum of their updates. Used by
``examples/merge_methods.py`` and the report's chapter on merging.
"""

from __future__ import annotations

import torch
from torch import nn

from ..lm.corpus import build_data
from ..lm.model import CharTokenizer, TinyLM, TinyLMConfig, lm_loss
from ..lora import AdapterConfig, add_adapter, inject_lora, set_adapter
from ..lora.merge_error import MergeErrors, merge_errors

__all__ = ["ADAPTERS", "TARGETS", "merge_study", "train_two_adapters"]

TARGETS: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
ADAPTERS: dict[str, str] = {"english": "pretrain", "piglatin": "finetune"}   # name: task


def _train(model: nn.Module, task: str, steps: int, seed: int) -> float:
    """``steps`` AdamW steps (lr 1e-2, 16 × 32 tokens) of the active adapter; the last loss."""
    data = build_data(task, CharTokenizer(), 32, n_train=400, n_val=20, seed=seed)  # type: ignore[arg-type]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = torch.zeros(())
    for step in range(steps):
        x, y = data.batch(step, 16, seed)                                 # (B, T) each
        loss = lm_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def train_two_adapters(steps: int = 30, seed: int = 0) -> tuple[nn.Module, dict[str, float]]:
    """The model with adapters ``"english"`` and ``"piglatin"`` (module doc) and each one's
    last training loss."""
    torch.manual_seed(seed)
    model = TinyLM(TinyLMConfig(d_model=64, n_layers=2, n_heads=4, block_size=32), seed=seed)
    config = AdapterConfig(r=8, lora_alpha=16, target_modules=TARGETS)
    names = list(ADAPTERS)
    inject_lora(model, config, adapter_name=names[0])
    add_adapter(model, names[1], config)
    losses = {}
    for name, task in ADAPTERS.items():
        set_adapter(model, name)
        losses[name] = _train(model, task, steps, seed + 1)
    return model, losses


def merge_study(steps: int = 30, density: float = 0.5, seed: int = 0
                ) -> tuple[MergeErrors, dict[str, float]]:
    """Every combination of ``0.6·english + 0.4·piglatin`` scored against the exact sum, and
    the adapters' last training losses."""
    model, losses = train_two_adapters(steps, seed)
    return merge_errors(model, list(ADAPTERS), [0.6, 0.4], density=density, seed=seed), losses
