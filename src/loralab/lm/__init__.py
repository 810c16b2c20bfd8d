"""The tiny causal LM of the fine-tuning experiment, its data and its training loop.

* :mod:`.model`: :class:`TinyLM` (GPT-style, pre-LN, ``q/k/v/o_proj`` and ``up/down_proj``),
  :class:`CharTokenizer`, :func:`generate`;
* :mod:`.corpus`: generated English (pretraining) and Pig Latin (fine-tuning), :class:`LMData`;
* :mod:`.train`: the training loop (AdamW, warmup + cosine, Ctrl-C checkpoints, DDP);
* :mod:`.checkpoint`: safetensors weights and resumable checkpoints (no pickle);
* :mod:`.dist`: devices and ``torchrun`` (DDP: gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

from .corpus import LMData, build_data
from .dist import DistContext, init_distributed, resolve_device
from .model import CharTokenizer, TinyLM, TinyLMConfig, generate
from .train import TrainConfig, TrainResult, evaluate, train

__all__ = [
    "CharTokenizer",
    "DistContext",
    "LMData",
    "TinyLM",
    "TinyLMConfig",
    "TrainConfig",
    "TrainResult",
    "build_data",
    "evaluate",
    "generate",
    "init_distributed",
    "resolve_device",
    "train",
]
