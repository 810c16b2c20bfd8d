"""Several named adapters on one model, as PEFT's ``PeftModel`` methods, as free functions.

``add_adapter`` puts another adapter beside the first (same or other modules), ``set_adapter``
picks the active one(s) (their outputs add up, and only they train), ``disable_adapters`` is a
context in which the model is exactly its base, ``delete_adapter`` removes one, and
``add_weighted_adapter`` builds a new adapter from weighted old ones, with PEFT's three
definitions (adapter ``i``: weight ``w_i``, scale ``s_i``, factors ``A_i``, ``B_i``)::

    "linear": A = Σ sign(w_i)·√|w_i s_i|·A_i,  B = Σ √|w_i s_i|·B_i   (same r; an approximation:
              B A ≠ Σ w_i s_i B_i A_i unless the adapters share their subspaces)
    "cat":    A = [w_1 s_1 A_1; w_2 s_2 A_2; …],  B = [B_1, B_2, …]    (r = Σ r_i; exact)
    "svd":    ΔW = Σ w_i ΔW_i,  B A = its best rank-r approximation (r = svd_rank or max r_i)

The new adapter has ``lora_alpha = r`` (scale 1), is frozen, and is not made active.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Literal

import torch
from torch import nn

from ..errors import LoralabError
from .config import AdapterConfig
from .inject import inject_lora, mark_only_lora_trainable, set_module, sync_active
from .layer import LoRALayer
from .state import adapters_of, lora_layers, trained_copies
from .tokens import token_wrappers

__all__ = ["COMBINATIONS", "add_adapter", "add_weighted_adapter", "delete_adapter",
           "disable_adapters", "set_adapter"]

COMBINATIONS: tuple[str, ...] = ("linear", "cat", "svd")
Combination = Literal["linear", "cat", "svd"]


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


def _new_config(model: nn.Module, adapters: list[str], combination: str,
                svd_rank: int | None) -> tuple[AdapterConfig, int]:
    configs = [adapters_of(model).configs[a] for a in adapters]
    if any(c.target_parameters for c in configs):
        raise LoralabError("add_weighted_adapter does not combine adapters with "
                           "target_parameters (as PEFT)")
    if any(c.use_dora for c in configs):
        raise LoralabError("add_weighted_adapter does not combine DoRA adapters")
    ranks = [max(c.r, *c.rank_pattern.values()) if c.rank_pattern else c.r for c in configs]
    if combination == "linear" and len(set(ranks)) != 1:
        raise LoralabError(f"combination_type='linear' needs adapters of one rank, got ranks "
                           f"{ranks}; use 'cat' or 'svd' (as PEFT requires)")
    rank = ranks[0] if combination == "linear" else sum(ranks) if combination == "cat" \
        else (svd_rank or max(ranks))
    kinds = {isinstance(c.target_modules, str) for c in configs}
    if len(kinds) > 1:
        raise LoralabError("adapters mixing a regex and a list for target_modules cannot be "
                           "combined (as in PEFT)")
    if kinds == {True}:
        targets: list[str] | str = "|".join(f"({c.target_modules})" for c in configs)
    else:
        targets = sorted(set().union(*(c.target_modules for c in configs)))  # type: ignore[arg-type]
    return replace(configs[0], r=rank, lora_alpha=rank, target_modules=targets,
                   init_lora_weights=True, rank_pattern={}, alpha_pattern={},
                   modules_to_save=None, task_type=None), rank


def _combined(layer: LoRALayer, adapters: list[str], weights: list[float], combination: str,
              rank: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The new ``(A, B)`` of one layer (``None`` if it has none of the adapters)."""
    have = [(a, w) for a, w in zip(adapters, weights, strict=True) if a in layer.r]
    if not have:
        return None
    if combination == "svd":
        delta = sum(w * layer.delta_weight(a) for a, w in have)   # (d_out, d_in[, k…])
        conv = delta.ndim > 2
        flat = delta.flatten(1) if conv else delta
        u, s, vh = torch.linalg.svd(flat, full_matrices=True)
        b, a = u[:, :rank] @ torch.diag(s[:rank]), vh[:rank]
        if conv:
            shape_a, shape_b = (t.shape for t in layer.factors(have[0][0]))
            a = a.reshape(rank, *shape_a[1:])
            b = b.reshape(shape_b[0], rank, *shape_b[2:])
        return a, b
    if combination == "cat":
        a = torch.cat([layer.factors(n)[0] * w * layer.scaling[n] for n, w in have], dim=0)
        b = torch.cat([layer.factors(n)[1] for n, w in have], dim=1)
        return a, b
    scales = [w * layer.scaling[n] for n, w in have]
    a = sum(math.copysign(math.sqrt(abs(c)), c) * layer.factors(n)[0]
            for (n, _), c in zip(have, scales, strict=True))
    b = sum(math.sqrt(abs(c)) * layer.factors(n)[1] for (n, _), c in zip(have, scales,
                                                                            strict=True))
    return a, b


@torch.no_grad()
def add_weighted_adapter(model: nn.Module, adapters: list[str], weights: list[float],
                         adapter_name: str, combination_type: Combination = "svd",
                         svd_rank: int | None = None) -> None:
    """A new adapter ``adapter_name`` from ``adapters`` weighted by ``weights`` (PEFT's
    ``add_weighted_adapter``, definitions in the module doc). Checked before any change."""
    state = adapters_of(model)
    adapters = state.check(adapters)
    if len(weights) != len(adapters) or not all(math.isfinite(float(w)) for w in weights):
        raise LoralabError(f"weights={weights!r} is not allowed; give one finite weight per "
                           f"adapter ({len(adapters)})")
    if combination_type not in COMBINATIONS:
        raise LoralabError(f"combination_type={combination_type!r} is not allowed; use one of "
                           f"{', '.join(COMBINATIONS)}")
    if adapter_name in state.configs:
        raise LoralabError(f"the model already has an adapter named {adapter_name!r}")
    combination = "linear" if len(adapters) == 1 else combination_type
    config, rank = _new_config(model, adapters, combination, svd_rank)
    active = list(state.active)
    inject_lora(model, config, adapter_name=adapter_name)
    for layer in lora_layers(model).values():
        if adapter_name not in layer.r:
            continue
        a_new, b_new = layer.factors(adapter_name)
        a_new.zero_()
        b_new.zero_()
        got = _combined(layer, adapters, [float(w) for w in weights], combination, rank)
        if got is not None:
            a, b = got
            a_new[: a.shape[0]].copy_(a)
            b_new[:, : b.shape[1]].copy_(b)
    set_adapter(model, active)
