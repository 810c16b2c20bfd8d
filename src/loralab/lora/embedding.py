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
from .layer import LOW_PRECISION, LoRALayer

__all__ = ["LoRAEmbedding"]


class LoRAEmbedding(LoRALayer):
    """A frozen ``nn.Embedding`` plus ``ΔE = s·(B A)ᵀ`` per adapter (see the module doc)."""

    def __init__(self, base: nn.Embedding, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: InitValue = True,
                 generator: torch.Generator | None = None, *, lora_bias: bool = False,
                 use_dora: bool = False, autocast_adapter_dtype: bool = True,
                 adapter_name: str = "default", init_options: dict | None = None) -> None:
        if not isinstance(base, nn.Embedding):
            raise LoralabError(f"LoRAEmbedding wraps an nn.Embedding, got {type(base).__name__}")
        super().__init__(base)
        w = base.weight
        self.num_embeddings, self.embedding_dim = int(w.shape[0]), int(w.shape[1])
        self.lora_embedding_A, self.lora_embedding_B = nn.ParameterDict(), nn.ParameterDict()
        self.add_adapter(adapter_name, r, lora_alpha, lora_dropout, use_rslora,
                         init_lora_weights, lora_bias=lora_bias, use_dora=use_dora,
                         generator=generator, autocast_adapter_dtype=autocast_adapter_dtype,
                         init_options=init_options)

    def create_factors(self, name: str, r: int, lora_bias: bool, dtype: torch.dtype) -> None:
        if lora_bias:
            raise LoralabError("lora_bias=True is not supported on nn.Embedding (PEFT refuses "
                               "it too)")
        kw = {"device": self.base.weight.device, "dtype": dtype}
        self.lora_embedding_A[name] = nn.Parameter(torch.empty(r, self.num_embeddings, **kw))
        self.lora_embedding_B[name] = nn.Parameter(torch.empty(self.embedding_dim, r, **kw))

    def factor_dicts(self) -> tuple:
        return self.lora_embedding_A, self.lora_embedding_B

    def factors(self, name: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        name = name or self.active_adapter
        return self.lora_embedding_A[name], self.lora_embedding_B[name]

    @torch.no_grad()
    def reset_lora_parameters(self, name: str, generator: torch.Generator | None = None
                              ) -> None:
        """``A = 0``, ``B ~ N(0, 1)`` (``init_lora_weights=False``: both ``N(0, 1)``)."""
        init = self.init_lora_weights[name]
        if init not in (True, False, "gaussian"):
            raise LoralabError(f"init_lora_weights={init!r} is not supported on nn.Embedding; "
                               "use True or 'gaussian'")
        a, b = self.factors(name)
        if init is False:
            torch.nn.init.normal_(a, generator=generator)
        else:
            torch.nn.init.zeros_(a)
        torch.nn.init.normal_(b, generator=generator)

    def delta_weight(self, name: str | None = None) -> torch.Tensor:
        """``ΔE = s·(B A)ᵀ``: ((d, r) @ (r, V))ᵀ -> (V, d), float32 for fp16/bf16 factors."""
        name = name or self.active_adapter
        a, b = self.factors(name)
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        return (b @ a).t() * self.scaling[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: token ids (...) -> (..., d)."""
        y = self.base(x)
        if self.disabled or self.merged:
            return y
        base, out = self.base, y
        for name in self.active_adapters:
            a, b = self.factors(name)
            after_a = F.embedding(x, a.t(), padding_idx=base.padding_idx, max_norm=base.max_norm,
                                  norm_type=base.norm_type,
                                  scale_grad_by_freq=base.scale_grad_by_freq, sparse=base.sparse)
            out = out + (after_a @ b.t()) * self.scaling[name]  # (..., r) @ (r, d)
        return out.to(y.dtype)
