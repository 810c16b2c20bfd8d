"""``LoRAEmbedding``: a frozen ``nn.Embedding`` plus a low-rank update of its table.

With the table ``E0: (V, d)`` (V tokens, width d), PEFT's factors are
``lora_embedding_A: (r, V)`` and ``lora_embedding_B: (d, r)``, and for token ids ``x``::

    y = E0[x] + s · Aᵀ[x] Bᵀ          ((..., r) @ (r, d) -> (..., d))
    ΔW = s · B A : (d, V)              (the table's update is ΔE = ΔWᵀ : (V, d))

Read as a linear map of a one-hot input, the table is ``W0 = E0ᵀ: (d_out, d_in) = (d, V)``,
stored transposed (as ``Conv1D``): ``delta_weight()`` is ``(d, V)`` like every layer's, and
only the read/write pair of :class:`~loralab.lora.LoRALayer` sees the ``(V, d)`` storage.

Init as PEFT (after loralib): ``A = 0``, ``B ~ N(0, 1)``, so the update starts at zero while
the gradient of ``A`` does not. PEFT applies no dropout on this path, nor does this layer.

DoRA (PEFT's ``DoraEmbeddingLayer``): a magnitude ``m: (d,)`` per embedding *dimension*, the
norm of each row of ``W0 + ΔW: (d, V)`` taken over the vocabulary, detached::

    y = (m/‖E0ᵀ + ΔW‖_c) ⊙ (E0[x] + s · Aᵀ[x] Bᵀ)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LoralabError
from .layer import LOW_PRECISION, LoRALayer
from .mixed import mixed_rows
from .spec import LayerSpec

__all__ = ["LoRAEmbedding"]


class LoRAEmbedding(LoRALayer):
    """A frozen ``nn.Embedding`` plus ``ΔE = s·(B A)ᵀ`` per adapter (see the module doc).

    Arguments as :class:`~loralab.lora.LoRALinear`'s (a ``LayerSpec`` or its fields)."""

    supports_lora_bias = False
    supports_dora = True

    def __init__(self, base: nn.Embedding, r: LayerSpec | int, *args: Any,
                 generator: torch.Generator | None = None, adapter_name: str = "default",
                 **kwargs: Any) -> None:
        if not isinstance(base, nn.Embedding):
            raise LoralabError(f"LoRAEmbedding wraps an nn.Embedding, got {type(base).__name__}")
        super().__init__(base)
        w = base.weight
        self.num_embeddings, self.embedding_dim = int(w.shape[0]), int(w.shape[1])
        self.lora_embedding_A, self.lora_embedding_B = nn.ParameterDict(), nn.ParameterDict()
        self.add_adapter(adapter_name, r, *args, generator=generator, **kwargs)

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
        init = self.init[name]
        if init.kind not in ("default", "random", "gaussian"):
            raise LoralabError(f"init_lora_weights={init.peft_value!r} is not supported on "
                               "nn.Embedding; use True or 'gaussian'")
        a, b = self.factors(name)
        if init.kind == "random":
            torch.nn.init.normal_(a, generator=generator)
        else:
            torch.nn.init.zeros_(a)
        torch.nn.init.normal_(b, generator=generator)

    def delta_weight(self, name: str | None = None) -> torch.Tensor:
        """``ΔW = s·B A``: (d, r) @ (r, V) -> (d, V) = (d_out, d_in) (the table's update is its
        transpose), float32 for fp16/bf16 factors."""
        name = name or self.active_adapter
        a, b = self.factors(name)
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        return (b @ a) * self.scaling[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: token ids (...) -> (..., d)."""
        y = self.base(x)
        if self.disabled or self.merged:
            return y
        if self.row_adapters is not None:
            return mixed_rows(self, x, y, self.lora_term)
        out = y
        for name in self.active_adapters:
            lora = self.lora_term(name, x)                      # (..., d)
            if self.use_dora[name]:
                with torch.no_grad():
                    norm = self.weight_norm(name).to(y.dtype)    # (d,), detached
                scale = self.magnitude(name) / norm
                out = scale * out + scale * lora
            else:
                out = out + lora
        return out.to(y.dtype)

    def lora_term(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Adapter ``name``'s term ``s·Aᵀ[x] Bᵀ``: token ids (...) -> (..., d)."""
        base, (a, b) = self.base, self.factors(name)
        after_a = F.embedding(x, a.t(), padding_idx=base.padding_idx, max_norm=base.max_norm,
                              norm_type=base.norm_type,
                              scale_grad_by_freq=base.scale_grad_by_freq, sparse=base.sparse)
        return (after_a @ b.t()) * self.scaling[name]  # (..., r) @ (r, d)
