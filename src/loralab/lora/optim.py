"""LoRA+ (Hayou et al. 2024): ``B`` learns faster than ``A``, as PEFT's
``create_loraplus_optimizer``.

With ``B = 0`` at init, ``A``'s gradient is 0 until ``B`` moves, and a single learning rate
is too small for ``B`` or too large for ``A`` at large width; LoRA+ gives ``B`` the rate
``η_B = λ·η_A`` (``loraplus_lr_ratio`` λ, 16 in the paper's experiments). PEFT's groups:

* ``A`` and every other trainable matrix: ``lr``, ``loraplus_weight_decay``;
* the factors of LoRA on embeddings: ``loraplus_lr_embedding`` (1e-6);
* ``B``, and every 1-D trainable tensor (biases, DoRA's magnitude): ``λ·lr``, with weight
  decay unless it is a bias or a norm layer's parameter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from .embedding import LoRAEmbedding
from .layer import LoRALayer

__all__ = ["loraplus_optimizer", "loraplus_param_groups"]


def _is_norm(module: nn.Module) -> bool:
    name = type(module).__name__
    return isinstance(module, nn.LayerNorm) or name.endswith(("LayerNorm", "RMSNorm"))


def loraplus_param_groups(model: nn.Module, lr: float, loraplus_lr_ratio: float = 16.0,
                          loraplus_lr_embedding: float = 1e-6,
                          loraplus_weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """The four parameter groups (see the module doc), each ``{"params", "lr",
    "weight_decay", "names"}``; ``names`` lists the parameters, for a reader to check."""
    if not lr > 0 or not loraplus_lr_ratio >= 1:
        raise LoralabError(f"lr={lr!r}, loraplus_lr_ratio={loraplus_lr_ratio!r} are not "
                           "allowed; lr > 0 and the ratio ηB/ηA >= 1")
    norm_params = {id(p) for m in model.modules() if _is_norm(m) for p in m.parameters()}
    modules = dict(model.named_modules())
    b_factors = {id(m.factors(a)[1]) for m in modules.values() if isinstance(m, LoRALayer)
                 for a in m.adapter_names}           # every B, told by its layer, not its name
    groups: dict[str, dict[str, torch.Tensor]] = {k: {} for k in
                                                  ("A", "embedding", "B", "B_no_decay")}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = modules.get(".".join(name.split(".")[:-2]))
        if isinstance(owner, LoRAEmbedding) and p.ndim == 2:   # its factors (DoRA's m: as B)
            groups["embedding"][name] = p
        elif id(p) in b_factors or p.ndim == 1:
            decay = id(p) not in norm_params and "bias" not in name
            groups["B" if decay else "B_no_decay"][name] = p
        else:
            groups["A"][name] = p
    spec = {"A": (lr, loraplus_weight_decay),
            "embedding": (loraplus_lr_embedding, loraplus_weight_decay),
            "B": (lr * loraplus_lr_ratio, loraplus_weight_decay),
            "B_no_decay": (lr * loraplus_lr_ratio, 0.0)}
    return [{"params": list(g.values()), "names": list(g), "lr": spec[k][0],
             "weight_decay": spec[k][1]} for k, g in groups.items()]


def loraplus_optimizer(model: nn.Module, optimizer_cls: type[torch.optim.Optimizer],
                       lr: float, loraplus_lr_ratio: float = 16.0,
                       loraplus_lr_embedding: float = 1e-6, loraplus_weight_decay: float = 0.0,
                       **kwargs: Any) -> torch.optim.Optimizer:
    """``optimizer_cls`` over the LoRA+ groups, e.g.
    ``loraplus_optimizer(model, torch.optim.AdamW, lr=2e-4, loraplus_lr_ratio=16)``."""
    groups = loraplus_param_groups(model, lr, loraplus_lr_ratio, loraplus_lr_embedding,
                                   loraplus_weight_decay)
    for g in groups:
        g.pop("names")
    return optimizer_cls(groups, lr=lr, **kwargs)
