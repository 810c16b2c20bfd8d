"""The tiny causal LM of the fine-tuning experiment, its data and its training loop.

* :mod:`.model`: :class:`TinyLM` (GPT-style, pre-LN, ``q/k/v/o_proj`` and ``up/down_proj``),
  :class:`CharTokenizer`, :func:`generate`;
* :mod:`.corpus`: generated English (pretraining) and Pig Latin (fine-tuning), :class:`LMData`;
* :mod:`.textdata`: the user's text (``--data``: .txt, folder, .jsonl, ``builtin:NAME``) split
  into train/validation, :class:`ByteTokenizer` (:mod:`.bytes`) to cover any UTF-8 text;
* :mod:`.train`: the training loop (AdamW, warmup + cosine, Ctrl-C checkpoints, DDP);
* :mod:`.checkpoint`: safetensors weights and resumable checkpoints (no pickle);
* :mod:`.dist`: devices and ``torchrun`` (DDP: gloo on CPU, nccl on CUDA);
* :mod:`.hf_model`: the user's transformers causal LM (``--model``), :func:`load_causal_lm`;
* :mod:`.memory`: a run's memory before it starts, :func:`estimate_run_memory`,
  :func:`check_fits`.
"""

from __future__ import annotations

from .bytes import ByteTokenizer
from .corpus import LMData, build_data
from .dist import DistContext, init_distributed, resolve_device
from .hf_model import HFCausalLM, hf_token_ids, load_causal_lm, module_names
from .memory import (
    MemoryEstimate,
    ModelShape,
    check_fits,
    estimate_from_config,
    estimate_run_memory,
)
from .model import CharTokenizer, TinyLM, TinyLMConfig, generate
from .textdata import (
    BUILTIN_TEXTS,
    TextCorpus,
    TokenCounts,
    check_data,
    corpus_data,
    load_text,
    token_counts,
)
from .train import TrainConfig, TrainResult, evaluate, train

__all__ = [
    "BUILTIN_TEXTS",
    "ByteTokenizer",
    "CharTokenizer",
    "DistContext",
    "HFCausalLM",
    "LMData",
    "MemoryEstimate",
    "ModelShape",
    "TextCorpus",
    "TinyLM",
    "TinyLMConfig",
    "TokenCounts",
    "TrainConfig",
    "TrainResult",
    "build_data",
    "check_fits",
    "check_data",
    "corpus_data",
    "estimate_from_config",
    "estimate_run_memory",
    "evaluate",
    "generate",
    "hf_token_ids",
    "init_distributed",
    "load_causal_lm",
    "load_text",
    "module_names",
    "resolve_device",
    "token_counts",
    "train",
]
