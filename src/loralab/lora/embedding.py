"""``LoRAEmbedding``: a frozen ``nn.Embedding`` plus a low-rank update of its table.

With the table ``E0: (V, d)`` (V tokens, width d), PEFT's factors are
``lora_embedding_A: (r, V)`` and ``lora_embedding_B: (d, r)``, and for token ids ``x``::

    y = E0[x] + s · Aᵀ[x] Bᵀ          ((..., r) @ (r, d) -> (..., d))
    ΔE = s · (B A)ᵀ : (V, d)

Init as PEFT (after loralib): ``A = 0``, ``B ~ N(0, 1)``, so the update starts at zero while
the gradient of ``A`` does not. PEFT applies no dropout on this path, nor does this layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LoralabError
from .config import InitValue
from .layer import LOW_PRECISION, LoRALayer, adapter_dtype

__all__ = ["LoRAEmbedding"]


class LoRAEmbedding(LoRALayer):
    """A frozen ``nn.Embedding`` plus ``ΔE = s·(B A)ᵀ`` (see the module doc for shapes)."""

    def __init__(self, base: nn.Embedding, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: InitValue = True,
                 generator: torch.Generator | None = None, *, lora_bias: bool = False,
                 autocast_adapter_dtype: bool = True) -> None:
        if not isinstance(base, nn.Embedding):
            raise LoralabError(f"LoRAEmbedding wraps an nn.Embedding, got {type(base).__name__}")
        if lora_bias:
            raise LoralabError("lora_bias=True is not supported on nn.Embedding (PEFT refuses "
                               "it too)")
        if init_lora_weights == "pissa":
            raise LoralabError("init_lora_weights='pissa' is not supported on nn.Embedding; "
                               "use True or 'gaussian'")
        super().__init__(base, r, lora_alpha, lora_dropout, use_rslora, init_lora_weights)
        w = base.weight
        self.num_embeddings, self.embedding_dim = int(w.shape[0]), int(w.shape[1])
        kw = {"device": w.device, "dtype": adapter_dtype(w.dtype, autocast_adapter_dtype)}
        self.lora_embedding_A = nn.Parameter(torch.empty(r, self.num_embeddings, **kw))
        self.lora_embedding_B = nn.Parameter(torch.empty(self.embedding_dim, r, **kw))
        self.reset_lora_parameters(generator)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lora_embedding_A, self.lora_embedding_B

    @torch.no_grad()
    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """``A = 0``, ``B ~ N(0, 1)`` (``init_lora_weights=False``: both ``N(0, 1)``)."""
        if self.merged:
            raise LoralabError("cannot re-initialise a merged LoRAEmbedding; unmerge() first")
        if self.init_lora_weights is False:
            nn.init.normal_(self.lora_embedding_A, generator=generator)
        else:
            nn.init.zeros_(self.lora_embedding_A)
        nn.init.normal_(self.lora_embedding_B, generator=generator)

    def delta_weight(self) -> torch.Tensor:
        """``ΔE = s·(B A)ᵀ``: ((d, r) @ (r, V))ᵀ -> (V, d), float32 for fp16/bf16 factors."""
        a, b = self.lora_embedding_A, self.lora_embedding_B
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        return (b @ a).t() * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: token ids (...) -> (..., d)."""
        y = self.base(x)
        if self.merged:
            return y
        base = self.base
        after_a = F.embedding(x, self.lora_embedding_A.t(), padding_idx=base.padding_idx,
                              max_norm=base.max_norm, norm_type=base.norm_type,
                              scale_grad_by_freq=base.scale_grad_by_freq, sparse=base.sparse)
        out = y + (after_a @ self.lora_embedding_B.t()) * self.scaling  # (..., r) @ (r, d)
        return out.to(y.dtype)
