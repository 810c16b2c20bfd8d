"""Several named adapters on one model, as PEFT's ``PeftModel`` methods, as free functions.

``add_adapter`` puts another adapter beside the first (same or other modules), ``set_adapter``
picks the active one(s) (their outputs add up, and only they train), ``disable_adapters`` is a
context in which the model is exactly its base, ``delete_adapter`` removes one, and
``add_weighted_adapter`` builds a new adapter from weighted old ones, with PEFT's eleven
definitions (``cat``, ``linear``, ``svd``, TIES, DARE, magnitude pruning: defined in
:mod:`loralab.lora.weighted`, re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import LoralabError
from .config import AdapterConfig
from .inject import inject_lora, mark_only_lora_trainable, set_module, sync_active
from .state import adapters_of, lora_layers, trained_copies
from .tokens import token_wrappers
from .weighted import COMBINATIONS, add_weighted_adapter

__all__ = ["COMBINATIONS", "add_adapter", "add_weighted_adapter", "delete_adapter",
           "disable_adapters", "set_adapter"]


def add_adapter(model: nn.Module, adapter_name: str, config: AdapterConfig | object,
                generator: torch.Generator | None = None) -> list[str]:
    """Add adapter ``adapter_name`` (PEFT's ``add_adapter``); the active one stays active."""
    if not adapters_of(model).configs:
        raise LoralabError("the model has no LoRA yet; call inject_lora first")
    return inject_lora(model, config, generator, adapter_name=adapter_name)


def set_adapter(model: nn.Module, adapter_name: str | list[str]) -> None:
    """Make ``adapter_name`` (or a list of names, whose outputs add up) the active
    adapter(s); only their parameters train, as in PEFT."""
    state = adapters_of(model)
    state.active = state.check(adapter_name)
    sync_active(model)
    bias = state.configs[state.active[0]].bias
    mark_only_lora_trainable(model, bias=bias)


@contextmanager
def disable_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model is exactly the base: no adapter acts (merged ones are
    taken out first and merged back after), trained copies give way to their originals."""
    layers, copies = lora_layers(model), trained_copies(model)
    merged = {n: list(m.merged_adapters) for n, m in layers.items() if m.merged}
    for m in layers.values():
        m.unmerge()
        m.disabled = True
    for c in copies.values():
        c.disabled = True
    tokens = token_wrappers(model)                    # trainable tokens: the base rows
    merged_tokens = [t for t in tokens.values() if t.merged_adapters]
    for t in tokens.values():
        t.unmerge()
        t.disabled = True
    try:
        yield model
    finally:
        for n, m in layers.items():
            m.disabled = False
            if n in merged:
                m.merge(warn=False, adapter_names=merged[n])
        for c in copies.values():
            c.disabled = False
        for t in tokens.values():
            t.disabled = False
        for t in merged_tokens:
            t.merge()


def delete_adapter(model: nn.Module, adapter_name: str) -> None:
    """Remove adapter ``adapter_name`` everywhere; if it was active, the first remaining
    adapter becomes active. The model's only adapter cannot be deleted (``unload`` it)."""
    state = adapters_of(model)
    state.check(adapter_name)
    if len(state.configs) == 1:
        raise LoralabError(f"adapter {adapter_name!r} is the model's only adapter; use "
                           "unload(model) to remove LoRA")
    for path, layer in reversed(lora_layers(model).items()):   # nested: inner first
        if adapter_name in layer.r:
            layer.delete_adapter(adapter_name)
            if not layer.r:
                set_module(model, path, layer.base)
    for tok in token_wrappers(model).values():
        tok.delete_adapter(adapter_name)
    del state.configs[adapter_name]
    state.active = [a for a in state.active if a != adapter_name] or [next(iter(state.configs))]
    set_adapter(model, state.active)
