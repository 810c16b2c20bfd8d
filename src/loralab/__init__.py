"""loralab: see, check and train LoRA (Low-Rank Adaptation).

The seed's teaching API is available at the top level, imported lazily so that
``import loralab`` (and ``loralab --help``) does not import torch::

    from loralab import LoraConfig, simulate_lora, pseudo_code
    simulate_lora(LoraConfig())

Convention used throughout (the LoRA paper's and PEFT's): for a linear layer
``y = x W0ᵀ`` with ``W0: (d_out, d_in)``, the update is ``ΔW = (α/r)·B A`` with
``A: (r, d_in)`` and ``B: (d_out, r)``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["DemoResult", "LoraConfig", "__version__", "pseudo_code", "simulate_lora"]

_LAZY = {
    "LoraConfig": "loralab.demo",
    "DemoResult": "loralab.demo",
    "simulate_lora": "loralab.demo",
    "pseudo_code": "loralab.demo",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loralab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
