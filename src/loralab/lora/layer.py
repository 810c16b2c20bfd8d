"""What every LoRA layer shares: a frozen base, named adapters ``ΔW = s·B A``, merge/unmerge.

A LoRA layer wraps a module ``base`` with weight ``W0`` and holds one or more *named*
adapters (PEFT's ``adapter_name``, ``"default"`` first). Adapter ``a`` has rank ``r[a]``,
scale ``s = scaling[a] = α/r`` (``α/√r`` with rsLoRA) and factors ``A``, ``B``; the active
adapters add up. The subclasses say what ``A`` and ``B`` are for their layer type; ``ΔW``
(:meth:`LoRALayer.delta_weight`) is always ``(d_out, d_in)`` (a kernel ``(C_out, C_in, k…)``
for convolutions), and only :meth:`LoRALayer.weight_out_in` / :meth:`LoRALayer.write_weight`
know how the base stores its weight (:mod:`loralab.lora.storage`: ``Conv1D`` and
``nn.Embedding`` store it transposed). What a layer type supports is a class attribute
(``supports_dora``, ``supports_split_init``, ``supports_lora_bias``). Merging::

    LoRA:   W0 ← W0 + ΔW          (b ← b + s·b_B with lora_bias)
    DoRA:   W0 ← m / ‖W0 + ΔW‖_c · (W0 + ΔW)       (‖·‖_c: the norm of each output row)

computed in at least float32 and rounded once into the base's dtype. A non-finite result
is refused before anything is written (PEFT's ``safe_merge``).

On a float16/bfloat16 base the factors live in float32 by default (PEFT's
``autocast_adapter_dtype=True``): a bf16 factor cannot hold the small steps of training
(``1 + 2⁻⁹`` rounds to 1), so most entries of a bf16 ``A`` would never move.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import LoralabError
from .spec import LayerSpec, as_layer_spec
from .storage import out_in, stores_transposed

__all__ = ["LOW_PRECISION", "LoRALayer", "LoRAPrecisionWarning", "adapter_dtype", "base_module",
           "wide"]

LOW_PRECISION = (torch.float16, torch.bfloat16)


class LoRAPrecisionWarning(UserWarning):
    """Merging into a float16/bfloat16 weight rounded it; the message says by how much."""


def adapter_dtype(base_dtype: torch.dtype, autocast_adapter_dtype: bool = True) -> torch.dtype:
    """The dtype of ``A`` and ``B``: float32 over a float16/bfloat16 base (unless
    ``autocast_adapter_dtype=False``), else the base's own."""
    if autocast_adapter_dtype and base_dtype in LOW_PRECISION:
        return torch.float32
    return base_dtype


def wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in at least float32 (float64 stays float64): merge arithmetic never narrows."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class LoRALayer(nn.Module):
    """Base of :class:`~loralab.lora.LoRALinear`, :class:`~loralab.lora.LoRAEmbedding` and
    :class:`~loralab.lora.LoRAConv`: per-adapter settings, the frozen ``base``, merging.

    Per adapter name (dicts, as PEFT's layers): ``r``, ``lora_alpha``, ``scaling``,
    ``use_rslora``, ``init`` (an :class:`~loralab.lora.init_option.InitOption`; PEFT's value
    in ``init_lora_weights``), ``lora_bias``, ``use_dora``, the dropout module
    ``lora_dropout[name]`` and, with DoRA, the magnitude ``lora_magnitude_vector[name]``.
    ``active_adapters`` add up in ``forward``; ``merged_adapters`` are in the base weight.
    Subclasses implement :meth:`create_factors`, :meth:`factors`, :meth:`delta_weight`,
    :meth:`reset_lora_parameters` and ``forward``. ``merge()`` / ``unmerge()`` are explicit
    and idempotent; ``eval()`` and ``forward`` never merge.
    """

    supports_dora: ClassVar[bool] = False         # DoRA (use_dora=True)
    supports_split_init: ClassVar[bool] = False   # PiSSA, OLoRA, LoftQ (rewrite the base)
    supports_lora_bias: ClassVar[bool] = True     # lora_B has a bias (lora_bias=True)

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.transposed = stores_transposed(base)   # read once: see weight_out_in
        for name in ("r", "lora_alpha", "scaling", "use_rslora", "init", "lora_bias",
                     "use_dora"):
            setattr(self, name, {})
        self.lora_dropout = nn.ModuleDict()
        self.lora_magnitude_vector = nn.ParameterDict()
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disabled = False
        self.merge_error = 0.0     # max |rounding change| of the last merge (0 for fp32)
        self._dora_norm: dict[str, torch.Tensor] = {}
        self.row_adapters: list[str] | None = None   # a mixed batch (loralab.lora.mixed)
        for p in base.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ adapters
    def add_adapter(self, name: str, r: LayerSpec | int, *args: Any,
                    generator: torch.Generator | None = None, **kwargs: Any) -> None:
        """Create adapter ``name`` from ``r``, a :class:`~loralab.lora.spec.LayerSpec` (or the
        rank, with the other arguments of :meth:`loralab.lora.spec.LayerSpec.of`: ``r,
        lora_alpha, lora_dropout, use_rslora, init_lora_weights, *, lora_bias, use_dora,
        autocast_adapter_dtype, init_options``), checked first (nothing changes on an error);
        the first adapter of a layer becomes its active one."""
        spec = as_layer_spec(r, *args, **kwargs)
        if not isinstance(name, str) or not name or "." in name:
            raise LoralabError(f"adapter_name={name!r} is not allowed; give a non-empty name "
                               "without dots")
        if name in self.r:
            raise LoralabError(f"this layer already has an adapter named {name!r}")
        if spec.use_dora and not self.supports_dora:
            raise LoralabError(f"use_dora=True is not supported on {type(self).__name__} "
                               f"(base {type(self.base).__name__}); DoRA works on Linear, "
                               "Conv1D, Embedding and Conv1d/2d/3d layers")
        if spec.lora_bias and getattr(self.base, "bias", None) is None:
            warnings.warn(f"lora_bias=True on a {type(self.base).__name__} without a bias: it "
                          "trains and saves, but cannot be merged (as PEFT warns)", UserWarning,
                          stacklevel=3)
        try:
            self.create_factors(name, spec.r, spec.lora_bias,
                                self.factor_dtype(spec.autocast_adapter_dtype))
            self.r[name], self.init[name], self.lora_bias[name] = \
                spec.r, spec.init, spec.lora_bias
            self.use_dora[name] = spec.use_dora
            self.set_scale(name, spec.lora_alpha, spec.use_rslora)
            self.set_dropout(name, spec.lora_dropout)
            self.reset_lora_parameters(name, generator)
        except Exception:
            self.delete_adapter(name)
            raise
        if spec.use_dora:           # m = ‖W0 + ΔW‖_c at init (‖W0‖_c when B = 0)
            norm = self.weight_norm(name).detach().to(self.factors(name)[0].dtype)
            self.lora_magnitude_vector[name] = nn.Parameter(norm.view(self.magnitude_shape()))
        if not self.active_adapters:
            self.active_adapters = [name]

    def delete_adapter(self, name: str) -> None:
        """Remove adapter ``name`` (unmerged first)."""
        if name in self.merged_adapters:
            self.unmerge()
        for d in (self.r, self.lora_alpha, self.scaling, self.use_rslora, self.init,
                  self.lora_bias, self.use_dora):
            d.pop(name, None)
        for holder in self.factor_dicts() + (self.lora_dropout, self.lora_magnitude_vector):
            if name in holder:
                del holder[name]
        self.active_adapters = [a for a in self.active_adapters if a != name]

    def factor_dtype(self, autocast_adapter_dtype: bool) -> torch.dtype:
        """The dtype of new factors (see :func:`adapter_dtype`)."""
        return adapter_dtype(self.base.weight.dtype, autocast_adapter_dtype)

    @property
    def init_lora_weights(self) -> dict[str, bool | str]:
        """PEFT's ``init_lora_weights`` value of each adapter (from ``init``)."""
        return {n: o.peft_value for n, o in self.init.items()}

    @property
    def adapter_names(self) -> list[str]:
        """Every adapter of this layer, in the order they were added."""
        return list(self.r)

    @property
    def active_adapter(self) -> str:
        """The first active adapter (the single one in the usual case)."""
        if not self.active_adapters:
            raise LoralabError("this LoRA layer has no active adapter")
        return self.active_adapters[0]

    def set_scale(self, name: str, lora_alpha: float, use_rslora: bool) -> None:
        """``scaling[name] = α/r`` (``α/√r`` with rsLoRA)."""
        r = self.r[name]
        self.lora_alpha[name], self.use_rslora[name] = lora_alpha, use_rslora
        self.scaling[name] = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r

    def set_dropout(self, name: str, p: float) -> None:
        """Dropout probability on adapter ``name``'s input."""
        self.lora_dropout[name] = nn.Dropout(p) if p > 0 else nn.Identity()

    def dropout_p(self, name: str) -> float:
        drop = self.lora_dropout[name]
        return float(drop.p) if isinstance(drop, nn.Dropout) else 0.0

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (holds ΔW only while merged), as PEFT exposes it."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The base bias or None."""
        return getattr(self.base, "bias", None)

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    # ------------------------------------------------------------------ subclass API
    def create_factors(self, name: str, r: int, lora_bias: bool, dtype: torch.dtype) -> None:
        raise NotImplementedError

    def factor_dicts(self) -> tuple:
        """The containers of A and B (``ModuleDict`` or ``ParameterDict``)."""
        raise NotImplementedError

    def factors(self, name: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` parameters of adapter ``name`` (default: the active one)."""
        raise NotImplementedError

    def lora_bias_param(self, name: str | None = None) -> torch.Tensor | None:
        """``lora_B``'s bias (only with ``lora_bias``)."""
        return None

    def merge_refusal(self) -> str | None:
        """Why this layer cannot be merged (a grouped convolution), or None."""
        return None

    def delta_weight(self, name: str | None = None) -> torch.Tensor:
        """Plain ``ΔW = s·B A`` as ``(d_out, d_in)`` (convolutions: the kernel's layout), in at
        least float32."""
        raise NotImplementedError

    def reset_lora_parameters(self, name: str, generator: torch.Generator | None = None
                              ) -> None:
        raise NotImplementedError

    def weight_out_in(self) -> torch.Tensor:
        """``W0`` as ``(d_out, d_in)``: a view of the stored weight (transposed for ``Conv1D``
        and ``nn.Embedding``, see :mod:`loralab.lora.storage`). With :meth:`write_weight`, the
        only place that knows the storage layout."""
        return out_in(self.base.weight, self.transposed)

    def read_weight(self) -> torch.Tensor:
        """``W0`` as ``(d_out, d_in)`` in at least float32 (a quantized base: dequantized)."""
        return wide(self.weight_out_in())

    @torch.no_grad()
    def write_weight(self, exact: torch.Tensor) -> float:
        """Store ``exact: (d_out, d_in)`` as the base weight (in its own layout); returns the
        rounding error it caused."""
        w = self.weight_out_in()
        w.copy_(exact)
        return float((wide(w) - exact).abs().max()) if w.dtype != exact.dtype else 0.0

    def weight_norm(self, name: str, weight: torch.Tensor | None = None) -> torch.Tensor:
        """DoRA's ``‖W0 + ΔW‖`` per output row (``(d_out,)``), ``W0`` the unmerged base (a
        kernel ``(C_out, C_in, k…)``: the norm of each output channel's whole kernel)."""
        w = wide(self.weight_out_in() if weight is None else weight)
        return torch.linalg.norm((w + self.delta_weight(name)).flatten(1), dim=1)

    def magnitude_shape(self) -> tuple[int, ...]:
        """The shape PEFT gives DoRA's magnitude ``m``: ``(d_out,)`` (convolutions:
        ``(1, C_out, 1…)``)."""
        return (int(self.weight_out_in().shape[0]),)

    def magnitude(self, name: str) -> torch.Tensor:
        """DoRA's magnitude ``m`` of adapter ``name`` as ``(d_out,)`` (a view)."""
        return self.lora_magnitude_vector[name].reshape(-1)

    def dora_factor(self, name: str, norm: torch.Tensor, ndim: int) -> torch.Tensor:
        """``m / norm`` shaped ``(d_out, 1…)`` to scale a weight of ``ndim`` dimensions."""
        return (wide(self.magnitude(name)) / norm).view(-1, *(1,) * (ndim - 1))

    @torch.no_grad()
    def effective_weight(self, name: str | None = None) -> torch.Tensor:
        """The weight the layer computes with adapter ``name`` (default: the active one), as
        ``(d_out, d_in)`` in at least float32: ``W0 + s·B A``, or DoRA's
        ``m/‖W0 + s·B A‖_c · (W0 + s·B A)`` (a quantized base: dequantized)."""
        name = name or self.active_adapter
        w = wide(self.weight_out_in())
        if self.merged:
            return w
        exact = w + self.delta_weight(name)
        if self.use_dora[name]:
            exact = self.dora_factor(name, torch.linalg.norm(exact.flatten(1), dim=1),
                                     exact.ndim) * exact
        return exact

    def trainable(self, names: list[str] | None = None) -> list[torch.Tensor]:
        """The parameters that train for adapters ``names`` (default: the active ones)."""
        out = []
        for name in self.active_adapters if names is None else names:
            out += [*self.factors(name), self.lora_bias_param(name)]
            if name in self.lora_magnitude_vector:
                out.append(self.lora_magnitude_vector[name])
        return [p for p in out if p is not None]

    # ------------------------------------------------------------------ merge
    def _merged_weight(self, name: str, w: torch.Tensor) -> torch.Tensor:
        """``W0 + ΔW`` (LoRA) or ``m/‖W0 + ΔW‖·(W0 + ΔW)`` (DoRA) in at least float32."""
        exact = wide(w) + self.delta_weight(name)
        if self.use_dora[name]:
            norm = self.weight_norm(name).detach()
            self._dora_norm[name] = norm
            exact = self.dora_factor(name, norm, exact.ndim) * exact
        return exact

    def _check_restorable(self, exact: torch.Tensor, names: list[str]) -> None:
        """Refuse a merge that unmerge could not undo: an update so much larger than ``W0``
        that ``W0`` vanishes when ``W0 + ΔW`` is rounded to the base's dtype (what unmerge
        would give back, ``round(W0 + ΔW) − ΔW``, is compared with ``W0``)."""
        w0 = self.read_weight()
        rounded = wide(exact.to(self.weight_out_in().dtype))
        restored = rounded - sum(self.delta_weight(n) for n in names)
        lost = float((restored.double() - w0.double()).abs().max())
        scale = float(w0.abs().max())
        if lost > 0.5 * scale:                        # W0 mostly gone, not a rounding
            dtype = str(self.weight_out_in().dtype).removeprefix("torch.")
            raise LoralabError(f"merging would destroy W0: the update reaches "
                               f"{float(exact.abs().max()):.3g} while W0 is at most {scale:.3g}, "
                               f"so in {dtype} W0 is lost to rounding (unmerge would give it back "
                               f"wrong by up to {lost:.3g}); keep the adapter unmerged")

    @torch.no_grad()
    def merge(self, warn: bool = True, adapter_names: list[str] | None = None) -> float:
        """Merge the active adapters (or ``adapter_names``) into the base weight.

        Returns the rounding error (``max |rounded − exact|``, 0 for fp32), also kept in
        ``merge_error``; with ``warn`` a :class:`LoRAPrecisionWarning` states it. A non-finite
        result raises :class:`LoralabError` and leaves the base as it was.
        """
        names = [n for n in (adapter_names or self.active_adapters)
                 if n not in self.merged_adapters]
        if not names:
            return self.merge_error
        if (why := self.merge_refusal()) is not None:
            raise LoralabError(why)
        if any(self.use_dora[n] for n in names) and (len(names) > 1 or self.merged_adapters):
            raise LoralabError("a DoRA adapter merges alone; merge one adapter at a time")
        w, b = self.weight, self.bias
        exact, new_bias = self.read_weight(), None if b is None else wide(b)
        for name in names:
            if self.lora_bias_param(name) is not None and b is None:
                raise LoralabError("cannot merge lora_bias=True into a base layer without a "
                                   "bias")
            exact = self._merged_weight(name, exact) if self.use_dora[name] else \
                exact + self.delta_weight(name)
            if self.lora_bias_param(name) is not None:
                new_bias = new_bias + self.scaling[name] * wide(self.lora_bias_param(name))
        if not bool(torch.isfinite(exact).all()) or (
                new_bias is not None and not bool(torch.isfinite(new_bias).all())):
            raise LoralabError("the LoRA update has NaN/Inf entries (training diverged?); "
                               "refusing to merge it into the base weights")
        if not any(self.use_dora[n] for n in names) and self.weight_out_in().is_floating_point():
            self._check_restorable(exact, names)          # (a quantized base re-quantizes)
        self.merge_error = self.write_weight(exact)
        if new_bias is not None and b is not None:
            b.copy_(new_bias)
        w = self.weight
        self.merged_adapters += names
        if warn and self.merge_error > 0:
            warnings.warn(f"merging LoRA into a {str(w.dtype).removeprefix('torch.')} weight "
                          f"{tuple(w.shape)} rounded it by up to {self.merge_error:.3g}",
                          LoRAPrecisionWarning, stacklevel=2)
        return self.merge_error

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take every merged adapter out of the base weight again (no-op when none is).

        Exact up to float rounding: ≤ ~1e-6 relative in float32; in float16/bfloat16 the
        merge and unmerge roundings add up (see ``merge_error``).
        """
        b = self.bias
        for name in reversed(self.merged_adapters):
            w = self.read_weight()
            if self.use_dora[name]:
                factor = self.dora_factor(name, self._dora_norm.pop(name), w.ndim)
                self.write_weight(w / factor - self.delta_weight(name))
            else:
                self.write_weight(w - self.delta_weight(name))
            if self.lora_bias_param(name) is not None and b is not None:
                b.copy_(wide(b) - self.scaling[name] * wide(self.lora_bias_param(name)))
        self.merged_adapters = []

    def extra_repr(self) -> str:
        parts = [f"{n}: r={self.r[n]}, lora_alpha={self.lora_alpha[n]}, "
                 f"scaling={self.scaling[n]:.4g}{', dora' if self.use_dora[n] else ''}"
                 for n in self.r]
        return f"adapters=[{'; '.join(parts)}], active={self.active_adapters}, " \
               f"merged={self.merged_adapters}"


def base_module(module: nn.Module) -> nn.Module:
    """The module a LoRA layer wraps (``module.base``), or ``module`` itself."""
    return module.base if isinstance(module, LoRALayer) else module
