"""What a model carries: its LoRA layers, trained copies, and each named adapter's config.

The configs are kept in a weak map keyed by the model (no attribute is set on the model):
``{adapter name: AdapterConfig}`` and the names of the active adapters, so
:func:`loralab.lora.save_adapter` can write each adapter's own config back.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from torch import nn

from ..errors import LoralabError
from .config import AdapterConfig
from .layer import LoRALayer
from .saved import TrainedCopy

__all__ = ["Adapters", "adapters_of", "injected_config", "lora_layers", "remember_config",
           "trained_copies"]


@dataclass
class Adapters:
    """The named adapters of one model: their configs (in the order added) and the active."""

    configs: dict[str, AdapterConfig] = field(default_factory=dict)
    active: list[str] = field(default_factory=list)

    def check(self, names: str | list[str]) -> list[str]:
        """``names`` as a list, each an adapter of this model (else one clear error)."""
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.configs]
        if unknown or not names:
            raise LoralabError(f"adapter {unknown[0] if unknown else names!r} is not allowed; "
                               f"the model's adapters are: {', '.join(self.configs) or '(none)'}")
        return names


_STATE: weakref.WeakKeyDictionary[nn.Module, Adapters] = weakref.WeakKeyDictionary()


def adapters_of(model: nn.Module) -> Adapters:
    """The model's :class:`Adapters` record (empty for a model without LoRA)."""
    return _STATE.setdefault(model, Adapters())


def injected_config(model: nn.Module, adapter_name: str | None = None) -> AdapterConfig | None:
    """The config of ``adapter_name`` (default: the first active adapter), if any."""
    state = _STATE.get(model)
    if state is None or not state.configs:
        return None
    name = adapter_name or (state.active[0] if state.active else next(iter(state.configs)))
    return state.configs.get(name)


def remember_config(model: nn.Module, config: AdapterConfig | None,
                    adapter_name: str = "default") -> None:
    """Record adapter ``adapter_name``'s config (``None``: forget every adapter)."""
    if config is None:
        _STATE.pop(model, None)
        return
    state = adapters_of(model)
    state.configs[adapter_name] = config
    if not state.active:
        state.active = [adapter_name]


def lora_layers(model: nn.Module) -> dict[str, LoRALayer]:
    """Every LoRA layer of ``model`` by module path (``""`` if it is the model)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALayer)}


def trained_copies(model: nn.Module) -> dict[str, TrainedCopy]:
    """Every module trained in full (``modules_to_save``) by path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, TrainedCopy)}
