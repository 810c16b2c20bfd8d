"""Tiny models and helpers shared by the tests of ``loralab.lora`` (no network, no PEFT)."""

from __future__ import annotations

import torch
from torch import nn

from loralab.lora import lora_layers

__all__ = ["Block", "Tiny", "assert_same", "randomize", "snapshot"]


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
