"""How a layer stores its weight: the one place that knows transformers' ``Conv1D`` (and
``nn.Embedding``) keep ``W`` transposed.

Everything else in loralab speaks ``W: (d_out, d_in)`` (the LoRA paper's and PEFT's
convention, ``y = x Wᵀ + b``), with ``A: (r, d_in)``, ``B: (d_out, r)`` and ``ΔW = s·B A``:

=========================  ===================  =======================================
module                     stored ``weight``    ``(d_out, d_in)``
=========================  ===================  =======================================
``nn.Linear``              ``(d_out, d_in)``    as stored
transformers' ``Conv1D``   ``(d_in, d_out)``    transposed (``y = x W + b``; PEFT's
                                                ``fan_in_fan_out=True``)
``nn.Embedding``           ``(V, d)``           transposed: ``d_out = d``, ``d_in = V``
                                                (a one-hot input), so ``A: (r, V)``
``nn.Conv1d``/``Conv2d``   ``(C_out, C_in, k…)`` as stored (kernel layout)
=========================  ===================  =======================================

:func:`weight_out_in` reads (a view: writing into it writes the weight); a LoRA layer reads
and writes through its own pair, :meth:`~loralab.lora.LoRALayer.weight_out_in` /
:meth:`~loralab.lora.LoRALayer.write_weight`, built on :func:`out_in`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["features", "is_conv1d", "out_in", "stores_transposed", "weight_out_in"]


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2 family): ``y = x W + b`` with ``W: (d_in, d_out)``
    (known by its type name and shape; transformers is not imported)."""
    return (type(module).__name__ == "Conv1D" and hasattr(module, "nf")
            and getattr(module, "weight", None) is not None and module.weight.ndim == 2)


def stores_transposed(module: nn.Module) -> bool:
    """Whether ``module.weight`` is stored as ``(d_in, d_out)``: ``Conv1D`` and
    ``nn.Embedding``."""
    return is_conv1d(module) or isinstance(module, nn.Embedding)


def out_in(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """A stored 2-D weight as ``(d_out, d_in)``: a view (``weight.t()`` when
    ``transposed``), so an in-place write lands in the storage."""
    return weight.t() if transposed else weight


def weight_out_in(module: nn.Module) -> torch.Tensor:
    """``module``'s weight as ``(d_out, d_in)`` (a view; see the module table)."""
    return out_in(module.weight, stores_transposed(module))


def features(module: nn.Module) -> tuple[int, int]:
    """``(d_out, d_in)`` of a Linear, ``Conv1D`` or Embedding, from its attributes where a
    stored shape can mislead (a 4-bit ``Linear4bit`` weight is packed)."""
    if isinstance(module, nn.Linear):
        return int(module.out_features), int(module.in_features)
    d_out, d_in = weight_out_in(module).shape[:2]
    return int(d_out), int(d_in)
