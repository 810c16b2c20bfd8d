"""``LoRAMultiheadAttention``: LoRA on ``nn.MultiheadAttention`` (PEFT's ``MultiheadAttention``).

``nn.MultiheadAttention`` reads its weights directly (``F.multi_head_attention_forward(…,
self.in_proj_weight, …, self.out_proj.weight, …)``) and never calls ``out_proj``'s forward,
so LoRA on its Linear would do nothing. As PEFT, one target ``attn`` gets two updates, each
with the same r and α: the packed input projection (query, key, value stacked)::

    in_proj_weight W_in: (3E, E)    A: (r, E)    B: (3E, r)    ΔW_in = s·B A

held by this layer, and the output projection, whose ``nn.Linear`` becomes a
:class:`~loralab.lora.LoRALinear` (``A: (r, E)``, ``B: (E, r)``) at ``attn.base.out_proj``
(PEFT's file: ``attn.base_layer.out_proj.lora_A.weight``). The forward runs the module with
``W_in + ΔW_in`` and ``W_out + ΔW_out`` put in place of the two weights for the call
(``torch.func.functional_call``; PEFT merges and unmerges around the call to the same
effect), so gradients reach both adapters. ``merge`` / ``unmerge`` move both updates.
Refused, as in PEFT: separate query/key/value weights (``kdim``/``vdim`` ≠ E), DoRA, mixed
adapter batches; loralab also refuses ``lora_bias`` here (PEFT's merge would drop it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from .factors import ModuleFactors
from .layer import LOW_PRECISION, LoRALayer, adapter_dtype
from .linear import LoRALinear
from .spec import LayerSpec, as_layer_spec

__all__ = ["LoRAMultiheadAttention"]


class LoRAMultiheadAttention(ModuleFactors, LoRALayer):
    """A frozen ``nn.MultiheadAttention`` with LoRA on ``in_proj_weight`` and ``out_proj``.

    Arguments as :class:`~loralab.lora.LoRALinear`'s (a ``LayerSpec`` or its fields).
    ``forward`` takes and returns what ``nn.MultiheadAttention`` does."""

    supports_lora_bias = False

    def __init__(self, base: nn.MultiheadAttention, r: LayerSpec | int, *args: Any,
                 generator: torch.Generator | None = None, adapter_name: str = "default",
                 **kwargs: Any) -> None:
        if not isinstance(base, nn.MultiheadAttention):
            raise LoralabError(f"LoRAMultiheadAttention wraps an nn.MultiheadAttention, got "
                               f"{type(base).__name__}")
        if not base._qkv_same_embed_dim:
            raise LoralabError("LoRA on an nn.MultiheadAttention needs kdim = vdim = embed_dim "
                               "(one packed in_proj_weight), as in PEFT")
        if not isinstance(base.out_proj, nn.Linear):
            raise LoralabError(f"the out_proj of this nn.MultiheadAttention is a "
                               f"{type(base.out_proj).__name__}, not an nn.Linear")
        super().__init__(base)
        self.in_features, self.out_features = base.embed_dim, 3 * base.embed_dim
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        self.add_adapter(adapter_name, r, *args, generator=generator, **kwargs)

    def add_adapter(self, name: str, r: LayerSpec | int, *args: Any,
                    generator: torch.Generator | None = None, **kwargs: Any) -> None:
        """Adapter ``name`` on ``in_proj_weight`` and on ``out_proj`` (same settings)."""
        spec = as_layer_spec(r, *args, **kwargs)
        for field, value in (("use_dora", spec.use_dora), ("lora_bias", spec.lora_bias)):
            if value:
                raise LoralabError(f"{field}=True is not supported on nn.MultiheadAttention "
                                   "(PEFT supports neither)")
        super().add_adapter(name, spec, generator=generator)
        out = self.base.out_proj
        try:
            if isinstance(out, LoRALinear):
                out.add_adapter(name, spec, generator=generator)
            else:
                self.base.out_proj = LoRALinear(out, spec, generator=generator,
                                                adapter_name=name)
        except Exception:
            super().delete_adapter(name)
            raise

    def delete_adapter(self, name: str) -> None:
        super().delete_adapter(name)
        out = self.base.out_proj
        if isinstance(out, LoRALinear) and name in out.r:
            out.delete_adapter(name)
            if not out.r:
                self.base.out_proj = out.base

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        """``in_proj_weight`` (3E, E): the weight this layer's own adapters update."""
        return self.base.in_proj_weight

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]
        return self.base.in_proj_bias

    @property
    def out_proj(self) -> LoRALinear | nn.Linear:
        return self.base.out_proj

    def weight_out_in(self) -> torch.Tensor:
        return self.base.in_proj_weight

    def factor_dtype(self, autocast_adapter_dtype: bool) -> torch.dtype:
        return adapter_dtype(self.base.in_proj_weight.dtype, autocast_adapter_dtype)

    def create_factors(self, name: str, r: int, lora_bias: bool, dtype: torch.dtype) -> None:
        kw = {"device": self.base.in_proj_weight.device, "dtype": dtype}
        self.lora_A[name] = nn.utils.skip_init(nn.Linear, self.in_features, r, bias=False, **kw)
        self.lora_B[name] = nn.utils.skip_init(nn.Linear, r, self.out_features, bias=False,
                                               **kw)

    @torch.no_grad()
    def reset_lora_parameters(self, name: str, generator: torch.Generator | None = None
                              ) -> None:
        """As :class:`~loralab.lora.LoRALinear`'s standard inits."""
        if self.init[name].kind not in ("default", "random", "gaussian"):
            raise LoralabError(f"init_lora_weights={self.init[name].peft_value!r} is not "
                               "supported on nn.MultiheadAttention; use True or 'gaussian'")
        self.reset_standard(name, generator)

    def delta_weight(self, name: str | None = None) -> torch.Tensor:
        """``ΔW_in = s·B A``: (3E, r) @ (r, E) -> (3E, E)."""
        name = name or self.active_adapter
        a, b = self.factors(name)
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        return (b @ a) * self.scaling[name]

    def merge(self, warn: bool = True, adapter_names: list[str] | None = None) -> float:
        """Merge into ``in_proj_weight`` and ``out_proj`` (see :meth:`LoRALayer.merge`)."""
        err = super().merge(warn, adapter_names)
        out = self.base.out_proj
        if isinstance(out, LoRALinear):
            err = max(err, out.merge(warn, [n for n in (adapter_names or self.active_adapters)
                                            if n in out.r] or None))
        return err

    def unmerge(self) -> None:
        super().unmerge()
        if isinstance(self.base.out_proj, LoRALinear):
            self.base.out_proj.unmerge()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """``nn.MultiheadAttention(query, key, value, …)`` with both updates in place."""
        swap: dict[str, torch.Tensor] = {}
        if not (self.disabled or self.merged) and self.active_adapters:
            w = self.base.in_proj_weight
            swap["in_proj_weight"] = w + sum(self.delta_weight(n)
                                             for n in self.active_adapters).to(w.dtype)
        out = self.base.out_proj
        if isinstance(out, LoRALinear) and not (out.disabled or out.merged) \
                and out.active_adapters:
            w = out.base.weight
            swap["out_proj.base.weight"] = w + sum(out.delta_weight(n)
                                                   for n in out.active_adapters).to(w.dtype)
        if not swap:
            return self.base(*args, **kwargs)
        return torch.func.functional_call(self.base, swap, args, kwargs)
