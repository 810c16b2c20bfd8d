"""What a training step costs: its analytic FLOPs, the optimizer's state, the saved
activations (used by :mod:`loralab.lm.train` to report each run's cost)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .model import CausalSelfAttention

__all__ = ["count_saved_tensors", "forward_flops_per_token", "optimizer_state_bytes",
           "train_flops_per_step"]


def train_flops_per_step(model: nn.Module, batch: int, seq_len: int) -> float:
    """Analytic FLOPs of one training step (forward + backward) on ``batch × seq_len`` tokens.

    Per ``nn.Linear`` (d_in -> d_out) over n tokens: forward ``2·n·d_in·d_out``, input gradient
    the same, weight gradient the same again only when its weight is trainable (a frozen
    LoRA base layer costs 4, a trained one 6, per ``n·d_in·d_out``). Per attention layer:
    ``Q Kᵀ`` and ``A V`` cost ``4·n·T·d`` forward and twice that backward (causal masking is
    not discounted). Embedding look-ups, norms and the softmax are not counted.
    """
    n = batch * seq_len
    flops = 0.0
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            per = 2.0 * n * mod.in_features * mod.out_features
            flops += per * (3 if mod.weight.requires_grad else 2)
        elif isinstance(mod, CausalSelfAttention):
            d = mod.q_proj.in_features
            flops += 3 * 4.0 * n * seq_len * d
    return flops


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's state tensors (AdamW: ``exp_avg``, ``exp_avg_sq``, step)."""
    return sum(v.numel() * v.element_size() for st in optimizer.state.values()
               for v in st.values() if isinstance(v, torch.Tensor))


@contextlib.contextmanager
def count_saved_tensors(params: list[torch.Tensor]) -> Iterator[list[int]]:
    """Sum the bytes of distinct tensors autograd saves for backward (the activations)."""
    skip = {p.untyped_storage().data_ptr() for p in params}
    seen: set[int] = set()
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in skip and key not in seen:
            seen.add(key)
            total[0] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


def forward_flops_per_token(model: nn.Module) -> float:
    """Analytic FLOPs of one token's forward: ``2·d_in·d_out`` per ``nn.Linear`` (what an
    evaluation or a generated token costs; attention's scores not counted)."""
    return sum(2.0 * m.in_features * m.out_features for m in model.modules()
               if isinstance(m, nn.Linear))
