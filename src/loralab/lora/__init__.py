"""LoRA for any ``nn.Module`` and for transformers models, in PEFT's names and on-disk format.

Convention (the LoRA paper's and PEFT's): a frozen layer with ``W0: (d_out, d_in)`` gets
``A: (r, d_in)`` and ``B: (d_out, r)``; the layer computes

    y = x W0ᵀ + b + s · (dropout(x) Aᵀ) Bᵀ,   s = α / r   (or α / √r with rsLoRA)

so the weight it stands for is ``W = W0 + ΔW`` with ``ΔW = s · B A`` (rank ≤ r); DoRA
(``use_dora=True``) rescales each output row of it to a trained magnitude.

One concept per module:

* :mod:`.config`: :class:`AdapterConfig` (``peft.LoraConfig``'s fields, checked once);
* :mod:`.init_option`: the init option typed (:class:`InitOption`, :class:`LoftQConfig`),
  parsed once from PEFT's ``init_lora_weights``; :mod:`.spec`: :class:`LayerSpec`, one
  adapter's settings on one layer (what the layer constructors take);
* :mod:`.targets`: which modules get LoRA (PEFT's matching rules, ``"all-linear"``);
* :mod:`.storage`: how a base stores its weight (``Conv1D``, ``nn.Embedding``: transposed);
  every layer's ``delta_weight()`` is ``(d_out, d_in)``;
* :mod:`.layer`: what every LoRA layer shares (merge/unmerge); :mod:`.linear`
  (:class:`LoRALinear`: ``nn.Linear`` and GPT-2's ``Conv1D``, fused), :mod:`.embedding`
  (:class:`LoRAEmbedding`), :mod:`.conv` (:class:`LoRAConv`: ``nn.Conv1d``/``2d``/``3d``,
  grouped ones too), :mod:`.saved` (:class:`TrainedCopy`: ``modules_to_save`` and task heads),
  :mod:`.param` (:class:`LoRAParameter`: ``target_parameters``, a bare 2-D/3-D parameter
  such as a mixture-of-experts' fused experts; matched by :mod:`.param_targets`);
* :mod:`.tokens` (:class:`TrainableTokens`: ``trainable_token_indices``), :mod:`.tied`
  (:class:`TiedLoRAHead`: ``ensure_weight_tying``), :mod:`.full_weights` (PEFT's
  ``save_embedding_layers``: full embedding weights in the adapter file);
* :mod:`.inject`: :func:`inject_lora`, :func:`merge_lora`, :func:`unmerge_lora`,
  :func:`unload_lora` (merge), :func:`unload` (no merge), :func:`count_parameters`;
* :mod:`.adapters` / :mod:`.loading`: :func:`save_adapter` / :func:`load_adapter`
  (``adapter_config.json`` + ``adapter_model.safetensors``, as PEFT writes them), with
  PEFT's tensor names from :mod:`.keys` (also used by :func:`lora_state_dict`);
* :mod:`.named`: several named adapters: :func:`add_adapter`, :func:`set_adapter`,
  :func:`disable_adapters`, :func:`delete_adapter`, :func:`add_weighted_adapter` (its eleven
  combinations in :mod:`.weighted`, the tensor rules, TIES, DARE, magnitude pruning, in
  :mod:`.combine`; each one's distance from the exact sum: :mod:`.merge_error`);
* :mod:`.shrink`: :func:`shrink_adapter`, a saved adapter cut to a lower rank (Eckart–Young);
* :mod:`.variants`: the PEFT variants loralab refuses, each by name;
* :mod:`.mixed`: :func:`mixed_adapter_batch`, one adapter per row of a batch (PEFT's
  ``adapter_names=``, ``"__base__"`` for the base), in forward and ``generate``;
* :mod:`.hotswap`: :func:`hotswap_adapter`, :func:`hotswap_adapter_from_state_dict`: another
  adapter's numbers into a loaded adapter, in place (PEFT's rules);
* :mod:`.inits`: PiSSA (exact and fast SVD), OLoRA and LoftQ; :mod:`.optim`: LoRA+;
* :mod:`.qlora`: QLoRA, LoRA on bitsandbytes 4-/8-bit bases, :func:`quantize_model`;
* :mod:`.hf`: transformers models save their adapter from ``save_pretrained``.
"""

from __future__ import annotations

from .adapters import save_adapter
from .config import AdapterConfig, as_adapter_config, config_from_peft, config_to_peft
from .conv import LoRAConv
from .embedding import LoRAEmbedding
from .hf import AdapterCheckpointCallback
from .hotswap import hotswap_adapter, hotswap_adapter_from_state_dict
from .init_option import InitOption, LoftQConfig
from .inject import (
    ParameterCount,
    count_parameters,
    format_parameter_count,
    inject_lora,
    lora_state_dict,
    mark_only_lora_trainable,
    merge_lora,
    unload,
    unload_lora,
    unmerge_lora,
)
from .layer import LoRALayer, LoRAPrecisionWarning
from .linear import LoRALinear
from .loading import load_adapter
from .merge_error import merge_errors
from .mixed import mixed_adapter_batch
from .named import add_adapter, add_weighted_adapter, delete_adapter, disable_adapters, set_adapter
from .optim import loraplus_optimizer, loraplus_param_groups
from .param import LoRAParameter
from .qlora import (
    base_weight_bytes,
    dequantized_weight,
    is_quantized,
    prepare_model_for_kbit_training,
    quantize_model,
)
from .saved import TrainedCopy
from .shrink import shrink_adapter
from .spec import LayerSpec
from .state import lora_layers
from .targets import find_targets, match_target
from .tied import TiedLoRAHead
from .tokens import TrainableTokens

__all__ = [
    "AdapterCheckpointCallback",
    "AdapterConfig",
    "InitOption",
    "LayerSpec",
    "LoRAConv",
    "LoRAEmbedding",
    "LoRALayer",
    "LoRALinear",
    "LoRAParameter",
    "LoRAPrecisionWarning",
    "LoftQConfig",
    "ParameterCount",
    "TiedLoRAHead",
    "TrainableTokens",
    "TrainedCopy",
    "add_adapter",
    "add_weighted_adapter",
    "as_adapter_config",
    "base_weight_bytes",
    "config_from_peft",
    "config_to_peft",
    "count_parameters",
    "delete_adapter",
    "dequantized_weight",
    "disable_adapters",
    "find_targets",
    "format_parameter_count",
    "hotswap_adapter",
    "hotswap_adapter_from_state_dict",
    "inject_lora",
    "is_quantized",
    "load_adapter",
    "lora_layers",
    "lora_state_dict",
    "loraplus_optimizer",
    "loraplus_param_groups",
    "mark_only_lora_trainable",
    "match_target",
    "merge_errors",
    "merge_lora",
    "mixed_adapter_batch",
    "prepare_model_for_kbit_training",
    "quantize_model",
    "save_adapter",
    "set_adapter",
    "shrink_adapter",
    "unload",
    "unload_lora",
    "unmerge_lora",
]
