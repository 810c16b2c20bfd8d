"""What every LoRA layer shares: a frozen base, ``ΔW = s·B A``, explicit merge and unmerge.

A LoRA layer wraps a module ``base`` with weight ``W0`` and adds a low-rank update of
rank ``r``, scaled by ``s = α/r`` (``α/√r`` with rsLoRA). The subclasses say what ``A`` and
``B`` are for their layer type and how ``ΔW`` lies in the base's weight layout
(:meth:`LoRALayer.delta_weight`); merging is the same for all::

    merge:    W0 ← W0 + ΔW   (b ← b + s·b_B with lora_bias)      unmerge: the reverse

computed in at least float32 and rounded once into the base's dtype. A non-finite ``ΔW``
is refused before anything is written (PEFT's ``safe_merge``), so a broken adapter never
reaches the base weights.

On a float16/bfloat16 base the factors live in float32 by default (PEFT's
``autocast_adapter_dtype=True``): a bf16 factor cannot hold the small steps of training
(``1 + 2⁻⁹`` rounds to 1), so most entries of a bf16 ``A`` would never move.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..errors import LoralabError
from .config import InitValue, check_layer_args

__all__ = ["LOW_PRECISION", "LoRALayer", "LoRAPrecisionWarning", "adapter_dtype"]

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
    :class:`~loralab.lora.LoRAConv`: the settings, the frozen ``base``, merge/unmerge.

    Subclasses create their factors in ``__init__`` (after calling this one), implement
    :meth:`factors`, :meth:`delta_weight`, :meth:`reset_lora_parameters` and ``forward``.
    ``merge()`` / ``unmerge()`` are explicit and idempotent (``merged`` flag); ``eval()``
    and ``forward`` never merge.
    """

    def __init__(self, base: nn.Module, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False, init_lora_weights: InitValue = True,
                 lora_bias: bool = False) -> None:
        super().__init__()
        check_layer_args(r, lora_alpha, lora_dropout, use_rslora, init_lora_weights)
        if lora_bias and getattr(base, "bias", None) is None:
            warnings.warn(f"lora_bias=True on a {type(base).__name__} without a bias: it trains "
                          "and saves, but cannot be merged (as PEFT warns)", UserWarning,
                          stacklevel=3)
        self.base = base
        self.r, self.init_lora_weights, self.lora_bias = r, init_lora_weights, lora_bias
        self.set_scale(lora_alpha, use_rslora)
        self.set_dropout(lora_dropout)
        self.merged = False
        self.merge_error = 0.0  # max |rounding change| of the last merge (0 for fp32)
        for p in base.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ settings
    def set_scale(self, lora_alpha: float, use_rslora: bool) -> None:
        """``scaling = α/r`` (``α/√r`` with rsLoRA)."""
        self.lora_alpha, self.use_rslora = lora_alpha, use_rslora
        self.scaling = lora_alpha / math.sqrt(self.r) if use_rslora else lora_alpha / self.r

    def set_dropout(self, p: float) -> None:
        """Dropout probability on the LoRA branch's input."""
        self.lora_dropout_p = float(p)
        self.lora_dropout = nn.Dropout(p) if p > 0 else nn.Identity()

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (holds ΔW only while merged), as PEFT exposes it."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The base bias or None."""
        return getattr(self.base, "bias", None)

    # ------------------------------------------------------------------ subclass API
    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A, B)`` parameters."""
        raise NotImplementedError

    def lora_bias_param(self) -> torch.Tensor | None:
        """``lora_B``'s bias (only with ``lora_bias``)."""
        return None

    def delta_weight(self) -> torch.Tensor:
        """``ΔW`` in the base weight's layout, in at least float32."""
        raise NotImplementedError

    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        """(Re)initialise ``A`` and ``B`` by ``init_lora_weights``."""
        raise NotImplementedError

    def cast_factors(self, dtype: torch.dtype) -> None:
        """Put ``A``, ``B`` (and ``lora_B``'s bias) in ``dtype`` (float32 on a half base)."""
        for p in (*self.factors(), self.lora_bias_param()):
            if p is not None:
                p.data = p.data.to(dtype)

    # ------------------------------------------------------------------ merge
    @torch.no_grad()
    def merge(self, warn: bool = True) -> float:
        """Add ΔW into the base weight (no-op when merged). Returns the rounding error.

        For a float16/bfloat16 base the sum ``W0 + ΔW`` is formed in float32 and rounded
        once; the return value (also kept in ``merge_error``) is ``max |rounded − exact|``,
        and with ``warn`` a :class:`LoRAPrecisionWarning` states it. A non-finite ΔW raises
        :class:`LoralabError` and leaves the base as it was.
        """
        if self.merged:
            return self.merge_error
        if self.lora_bias_param() is not None and self.bias is None:
            raise LoralabError("cannot merge lora_bias=True into a base layer without a bias")
        w = self.base.weight
        delta = self.delta_weight()
        exact = wide(w) + delta
        bias_b = self.lora_bias_param()
        new_bias = None if bias_b is None else wide(self.base.bias) + self.scaling * wide(bias_b)
        if not bool(torch.isfinite(exact).all()) or (
                new_bias is not None and not bool(torch.isfinite(new_bias).all())):
            raise LoralabError("the LoRA update has NaN/Inf entries (training diverged?); "
                               "refusing to merge it into the base weights")
        w.copy_(exact)
        if new_bias is not None:
            self.base.bias.copy_(new_bias)
        self.merge_error = float((wide(w) - exact).abs().max()) if w.dtype != exact.dtype \
            else 0.0
        self.merged = True
        if warn and self.merge_error > 0:
            warnings.warn(f"merging LoRA into a {str(w.dtype).removeprefix('torch.')} weight "
                          f"{tuple(w.shape)} rounded it by up to {self.merge_error:.3g} "
                          f"(largest |ΔW| entry: {float(delta.abs().max()):.3g})",
                          LoRAPrecisionWarning, stacklevel=2)
        return self.merge_error

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ΔW from the base weight again (no-op when not merged).

        Exact up to float rounding: ≤ ~1e-6 relative in float32; in float16/bfloat16 the
        merge and unmerge roundings add up (see ``merge_error``).
        """
        if not self.merged:
            return
        w = self.base.weight
        w.copy_(wide(w) - self.delta_weight())
        bias_b = self.lora_bias_param()
        if bias_b is not None:
            self.base.bias.copy_(wide(self.base.bias) - self.scaling * wide(bias_b))
        self.merged = False

    def extra_repr(self) -> str:
        return (f"r={self.r}, lora_alpha={self.lora_alpha}, scaling={self.scaling:.4g}, "
                f"init_lora_weights={self.init_lora_weights!r}, merged={self.merged}")
