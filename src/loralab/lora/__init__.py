"""LoRA for any ``nn.Module``, in PEFT's names and PEFT's on-disk format.

Convention (the LoRA paper's and PEFT's): a frozen ``nn.Linear`` with ``W0: (d_out, d_in)``
gets ``A: (r, d_in)`` and ``B: (d_out, r)``; the layer computes

    y = x W0ᵀ + b + s · (dropout(x) Aᵀ) Bᵀ,   s = α / r   (or α / √r with rsLoRA)

so the weight it stands for is ``W = W0 + ΔW`` with ``ΔW = s · B A`` (rank ≤ r).

One concept per module:

* :mod:`.config`: :class:`AdapterConfig` (PEFT's field names, validated once) and matching;
* :mod:`.layer`: :class:`LoRALinear` (fused forward/backward, merge/unmerge);
* :mod:`.inject`: :func:`inject_lora`, :func:`merge_lora`, :func:`unmerge_lora`,
  :func:`unload_lora`, :func:`lora_state_dict`, :func:`count_parameters`;
* :mod:`.adapters`: :func:`save_adapter` / :func:`load_adapter` (``adapter_config.json`` +
  ``adapter_model.safetensors``, as PEFT writes them).
"""

from __future__ import annotations

from .adapters import config_from_peft, config_to_peft, load_adapter, save_adapter
from .config import AdapterConfig, match_target
from .inject import (
    ParameterCount,
    count_parameters,
    find_targets,
    format_parameter_count,
    inject_lora,
    lora_layers,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unload_lora,
    unmerge_lora,
)
from .layer import LoRALinear, LoRAPrecisionWarning

__all__ = [
    "AdapterConfig",
    "LoRALinear",
    "LoRAPrecisionWarning",
    "ParameterCount",
    "config_from_peft",
    "config_to_peft",
    "count_parameters",
    "find_targets",
    "format_parameter_count",
    "inject_lora",
    "load_adapter",
    "lora_layers",
    "lora_state_dict",
    "mark_only_lora_trainable",
    "match_target",
    "merge_lora",
    "save_adapter",
    "unload_lora",
    "unmerge_lora",
]
