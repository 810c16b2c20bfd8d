"""Small models of each layer type and the two directions against PEFT 0.21 (shared by the
tests of the layer types, the full-weight adapters and ``benchmarks/parity_layers.py``).

Every helper returns the max |difference| of the outputs (fp32); :func:`tol` scales the
tolerance to the outputs' size (1e-5 of the largest |output|, at least 1e-5).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from loralab.lora import (  # noqa: E402
    AdapterConfig,
    inject_lora,
    load_adapter,
    merge_lora,
    save_adapter,
    unload,
    unmerge_lora,
)

__all__ = ["ConvNet3", "Model", "conv_net3", "from_peft", "max_diff", "merge_checks", "out",
           "to_peft", "tol", "train_like"]

Model = Callable[[], nn.Module]


class ConvNet3(nn.Module):
    """Embedding -> Conv1d -> Conv2d (grouped when ``groups``) -> Conv3d -> 1×1 Conv2d."""

    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.c1 = nn.Conv1d(4, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1, groups=groups)
        self.c3 = nn.Conv3d(8, 4, (1, 3, 3), padding=(0, 1, 1))
        self.p = nn.Conv2d(4, 4, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.c1(self.emb(ids).transpose(1, 2))                        # (N, 6, L)
        h = self.c2(h.unsqueeze(2).expand(-1, -1, 3, -1))                 # (N, 8, 3, L)
        h = self.c3(h.unsqueeze(2).expand(-1, -1, 2, -1, -1))             # (N, 4, 2, 3, L)
        return self.p(h.mean(2))                                          # (N, 4, 3, L)


def conv_net3(groups: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return ConvNet3(groups).eval()


IDS = torch.randint(0, 10, (2, 7), generator=torch.Generator().manual_seed(3))


def out(model: nn.Module, ids: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        res = model(IDS if ids is None else ids)
    return res.logits if hasattr(res, "logits") else res


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def tol(reference: torch.Tensor, rel: float = 1e-5) -> float:
    """``rel`` of the largest |output| (at least ``rel``): fp32 rounding grows with size."""
    return rel * max(1.0, float(reference.abs().max()))


def train_like(model: nn.Module, seed: int = 1) -> None:
    """Change every trainable parameter, as training would (B ≠ 0 afterwards)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen).to(p.dtype) * 0.2)


def from_peft(make: Model, fields: dict, folder: Path, ids: torch.Tensor | None = None,
              **save_kw: object) -> tuple[float, nn.Module, nn.Module]:
    """PEFT trains-like and saves; loralab loads. Returns (max diff, ours, theirs)."""
    import peft

    theirs = peft.get_peft_model(make(), peft.LoraConfig(**copy.deepcopy(fields)))
    train_like(theirs)
    theirs.save_pretrained(folder, **save_kw)
    ours = make()
    load_adapter(ours, folder)
    return max_diff(out(ours, ids), out(theirs, ids)), ours, theirs


def to_peft(make: Model, fields: dict, folder: Path, ids: torch.Tensor | None = None
            ) -> tuple[float, nn.Module, nn.Module]:
    """loralab trains-like and saves; PEFT loads. Returns (max diff, ours, theirs)."""
    import peft

    ours = make()
    inject_lora(ours, AdapterConfig(**copy.deepcopy(fields)))
    train_like(ours)
    save_adapter(ours, folder)
    theirs = peft.PeftModel.from_pretrained(make(), folder).eval()
    return max_diff(out(ours, ids), out(theirs, ids)), ours, theirs


def merge_checks(ours: nn.Module, ids: torch.Tensor | None = None) -> tuple[float, float]:
    """(max |merged − unmerged|, max |weights after unmerge − before|), then ``unload``."""
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    y = out(ours, ids)
    merge_lora(ours)
    merged = max_diff(out(ours, ids), y)
    unmerge_lora(ours)
    now = ours.state_dict()
    restored = max(max_diff(now[k], before[k]) for k in before)
    unload(ours)
    return merged, restored
