"""What a model carries: its LoRA layers, its fully trained copies, the config it was given.

The config is kept in a weak map keyed by the model (no attribute is set on the model), so
:func:`loralab.lora.save_adapter` can write the user's own ``target_modules`` back.
"""

from __future__ import annotations

import weakref

from torch import nn

from .config import AdapterConfig
from .layer import LoRALayer
from .saved import TrainedCopy

__all__ = ["injected_config", "lora_layers", "remember_config", "trained_copies"]

_CONFIGS: weakref.WeakKeyDictionary[nn.Module, AdapterConfig] = weakref.WeakKeyDictionary()


def injected_config(model: nn.Module) -> AdapterConfig | None:
    """The :class:`AdapterConfig` ``model`` was last injected or loaded with, if any."""
    return _CONFIGS.get(model)


def remember_config(model: nn.Module, config: AdapterConfig | None) -> None:
    """Record (or, with ``None``, forget) the config ``model`` now carries."""
    if config is None:
        _CONFIGS.pop(model, None)
    else:
        _CONFIGS[model] = config


def lora_layers(model: nn.Module) -> dict[str, LoRALayer]:
    """Every LoRA layer of ``model`` by module path (``""`` if it is the model)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALayer)}


def trained_copies(model: nn.Module) -> dict[str, TrainedCopy]:
    """Every module trained in full (``modules_to_save``) by path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, TrainedCopy)}
