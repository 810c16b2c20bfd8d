"""``LoRAParameter``: LoRA on a bare ``nn.Parameter`` (PEFT's ``ParamWrapper``), e.g. the fused
experts of a transformers mixture-of-experts model.

Such experts are no ``nn.Linear`` but one 3-D parameter ``(E, ·, ·)`` read by the module's
own ``forward`` (``F.linear(x, self.gate_up_proj[e])``, ``torch.bmm``), so ``target_modules``
cannot reach them. The layer wraps the *module* that holds the parameter and, for the
duration of its forward, hands it ``W0 + ΔW`` in place of ``W0`` (``torch.func.functional_call``;
PEFT uses a parametrization to the same effect). Each expert ``e`` gets its own rank-r pair,
stored as PEFT stores it, in one ``lora_A`` and one ``lora_B``::

    lora_A.weight: (r·E, d_in)    A_e = A.reshape(E, r, d_in)[e]              (r, d_in)
    lora_B.weight: (d_out, r·E)   B_e = B.reshape(d_out, r, E)[:, :, e]       (d_out, r)
    ΔW[e] = s · B_e A_e                                                        (d_out, d_in)

(note the two interleavings: rows of A expert-major, columns of B rank-major). The layout of
the parameter decides which side is ``d_in`` (PEFT's rule): a 2-D parameter is
``(d_out, d_in)`` with ``E = 1``; a 3-D one is ``(E, d_out, d_in)``, or ``(E, d_in, d_out)``
when its module says ``is_transposed = True`` (transformers' GPT-OSS experts); ``ΔW`` is
returned in the parameter's own layout, so merging is ``W0 ← W0 + ΔW``.

Several parameters of one module nest, as PEFT nests them: the first targeted parameter (in
the module's registration order) is wrapped innermost, the next wraps that wrapper, and so
on; PEFT's file names the inner ones ``<module>.base_layer.lora_A.weight`` (loralab's
module path is ``<module>.base``: :func:`loralab.lora.keys.peft_layer_path`). Not supported
(as in PEFT): dropout, ``lora_bias``, DoRA, ``fan_in_fan_out`` (checked in
:mod:`loralab.lora.param_config`) and mixed adapter batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from .factors import ModuleFactors
from .layer import LOW_PRECISION, LoRALayer, adapter_dtype
from .param_config import PARAM_INITS
from .spec import LayerSpec, as_layer_spec

__all__ = ["LoRAParameter", "holder_of", "param_layout"]


def holder_of(module: nn.Module) -> nn.Module:
    """The module that holds the parameters, below any nested :class:`LoRAParameter`."""
    while isinstance(module, LoRAParameter):
        module = module.base
    return module


def param_layout(holder: nn.Module, param: torch.Tensor) -> tuple[int, int, int, bool]:
    """``(E, d_out, d_in, out_in)`` of a 2-D or 3-D parameter (PEFT's rule, module doc);
    ``out_in``: the parameter stores ``(…, d_out, d_in)``."""
    if param.ndim == 2:
        return 1, int(param.shape[0]), int(param.shape[1]), True
    if param.ndim != 3:
        raise LoralabError(f"target_parameters matches a {param.ndim}-D parameter of shape "
                           f"{tuple(param.shape)}; only 2-D and 3-D parameters take LoRA")
    e, d1, d2 = (int(n) for n in param.shape)
    if getattr(holder, "is_transposed", False):
        return e, d2, d1, False
    return e, d1, d2, True


class LoRAParameter(ModuleFactors, LoRALayer):
    """LoRA on parameter ``parameter_name`` of module ``base`` (see the module doc).

    ``LoRAParameter(base, parameter_name, spec)`` with a :class:`~loralab.lora.spec.LayerSpec`
    or its fields, ``generator=``, ``adapter_name=`` (``"default"``). ``forward`` takes what
    ``base`` takes and returns what it returns."""

    supports_lora_bias = False

    def __init__(self, base: nn.Module, parameter_name: str, r: LayerSpec | int, *args: Any,
                 generator: torch.Generator | None = None, adapter_name: str = "default",
                 **kwargs: Any) -> None:
        holder = holder_of(base)
        param = getattr(holder, parameter_name, None)
        if not isinstance(param, nn.Parameter):
            raise LoralabError(f"{type(holder).__name__} has no nn.Parameter named "
                               f"{parameter_name!r}")
        self.num_experts, self.out_features, self.in_features, self.out_in = \
            param_layout(holder, param)
        super().__init__(base)
        self.parameter_name = parameter_name
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        self.add_adapter(adapter_name, r, *args, generator=generator, **kwargs)

    def add_adapter(self, name: str, r: LayerSpec | int, *args: Any,
                    generator: torch.Generator | None = None, **kwargs: Any) -> None:
        """As :meth:`LoRALayer.add_adapter`, refusing first what PEFT's ``ParamWrapper``
        refuses (dropout, ``lora_bias``, DoRA, inits other than True/False/"gaussian")."""
        spec = as_layer_spec(r, *args, **kwargs)
        for field, value, off in (("lora_dropout", spec.lora_dropout, 0),
                                  ("lora_bias", spec.lora_bias, False),
                                  ("use_dora", spec.use_dora, False)):
            if value != off:
                raise LoralabError(f"{field}={value!r} is not allowed on LoRA for an "
                                   "nn.Parameter (target_parameters); PEFT refuses it too")
        if spec.init.kind not in PARAM_INITS:
            raise LoralabError(f"init_lora_weights={spec.init.peft_value!r} is not allowed on "
                               "LoRA for an nn.Parameter; use True, False or 'gaussian'")
        super().add_adapter(name, spec, generator=generator)

    def param(self) -> nn.Parameter:
        """The wrapped parameter ``W0`` (holds ``ΔW`` only while merged)."""
        return getattr(holder_of(self.base), self.parameter_name)

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        """The wrapped parameter (as a LoRA layer's ``weight`` is its base weight)."""
        return self.param()

    @property
    def bias(self) -> None:  # type: ignore[override]
        return None

    def weight_out_in(self) -> torch.Tensor:
        """``W0`` in its own layout (the layout of :meth:`delta_weight`)."""
        return self.param()

    def factor_dtype(self, autocast_adapter_dtype: bool) -> torch.dtype:
        return adapter_dtype(self.param().dtype, autocast_adapter_dtype)

    def create_factors(self, name: str, r: int, lora_bias: bool, dtype: torch.dtype) -> None:
        kw = {"device": self.param().device, "dtype": dtype}
        e = self.num_experts
        self.lora_A[name] = nn.utils.skip_init(nn.Linear, self.in_features, r * e, bias=False,
                                               **kw)
        self.lora_B[name] = nn.utils.skip_init(nn.Linear, r * e, self.out_features, bias=False,
                                               **kw)

    @torch.no_grad()
    def reset_lora_parameters(self, name: str, generator: torch.Generator | None = None
                              ) -> None:
        """A Kaiming-uniform (``"gaussian"``: N(0, 1/r²)), B = 0; ``False``: both random."""
        self.reset_standard(name, generator)

    def delta_weight(self, name: str | None = None) -> torch.Tensor:
        """``ΔW`` in the parameter's layout: ``(d_out, d_in)``, ``(E, d_out, d_in)`` or
        ``(E, d_in, d_out)`` (module doc), in at least float32 for fp16/bf16 factors."""
        name = name or self.active_adapter
        a, b = self.factors(name)
        if a.dtype in LOW_PRECISION:
            a, b = a.float(), b.float()
        e, r = self.num_experts, self.r[name]
        a3 = a.reshape(e, r, self.in_features)                      # (E, r, d_in)
        b3 = b.reshape(self.out_features, r, e).permute(2, 0, 1)    # (E, d_out, r)
        delta = torch.bmm(b3, a3) * self.scaling[name]              # (E, d_out, d_in)
        if self.param().ndim == 2:
            return delta[0]
        return delta if self.out_in else delta.transpose(1, 2)

    def _param_path(self) -> str:
        """The parameter's path relative to ``base`` (through nested wrappers)."""
        path, mod = self.parameter_name, self.base
        while isinstance(mod, LoRAParameter):
            path, mod = f"base.{path}", mod.base
        return path

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """``base(*args, **kwargs)`` computed with ``W0 + Σ_active ΔW`` (in ``W0``'s dtype)."""
        names = [n for n in self.active_adapters if n in self.r]
        if self.disabled or self.merged or not names:
            return self.base(*args, **kwargs)
        w = self.param()
        delta = sum(self.delta_weight(n) for n in names)
        new = w + delta.to(w.dtype)
        return torch.func.functional_call(self.base, {self._param_path(): new}, args, kwargs)

    def extra_repr(self) -> str:
        return f"parameter_name={self.parameter_name!r}, experts={self.num_experts}, " \
               + super().extra_repr()
