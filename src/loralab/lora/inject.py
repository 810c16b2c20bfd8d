"""Injection by module name, merge/unmerge/unload and parameter counting.

Convention (the LoRA paper's and PEFT's): a frozen ``nn.Linear`` with ``W0: (d_out, d_in)``
gets ``A: (r, d_in)`` and ``B: (d_out, r)``; the layer computes

    y = x W0ᵀ + b + s · (dropout(x) Aᵀ) Bᵀ,   s = α / r   (or α / √r with rsLoRA)

so the weight it stands for is ``W = W0 + ΔW`` with ``ΔW = s · B A`` (rank ≤ r).
Module and field names follow Hugging Face PEFT (``lora_A``, ``lora_B``, ``lora_alpha``,
``target_modules``, ``use_rslora``...), so adapters map one to one onto PEFT's files: see
:func:`loralab.lora.save_adapter` / :func:`loralab.lora.load_adapter`
(:mod:`loralab.lora.adapters`).
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import get_args

import torch
from torch import nn

from ..errors import LoralabError
from .config import AdapterConfig, BiasKind, match_target
from .layer import _LOW_PRECISION, LoRALinear, LoRAPrecisionWarning

__all__ = [
    "ParameterCount",
    "count_parameters",
    "find_targets",
    "format_parameter_count",
    "inject_lora",
    "injected_config",
    "lora_layers",
    "lora_state_dict",
    "mark_only_lora_trainable",
    "merge_lora",
    "remember_config",
    "unload_lora",
    "unmerge_lora",
]

# The config each model was injected with (read by save_adapter); no attribute is set on it.
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


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every :class:`LoRALinear` of ``model`` by module path (``""`` if it is the model)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def _inside_lora(name: str, lora_names: list[str]) -> bool:
    return any(name.startswith(f"{p}.") if p else True for p in lora_names)


def find_targets(model: nn.Module, config: AdapterConfig) -> list[str]:
    """The module paths ``config.target_modules`` selects, checked (no change to ``model``).

    Raises :class:`LoralabError` when nothing matches (listing the model's Linear names),
    when a match is not an ``nn.Linear``, already wrapped, or shared by several paths.
    """
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    names: list[str] = []
    for name, mod in model.named_modules():
        if name == "" or _inside_lora(name, wrapped) or not match_target(config, name):
            continue
        parent = model.get_submodule(name.rpartition(".")[0])
        if isinstance(parent, nn.MultiheadAttention):
            raise LoralabError(f"module {name!r} belongs to an nn.MultiheadAttention, which "
                               "reads its weight directly; LoRA there would have no effect")
        if isinstance(mod, LoRALinear):
            raise LoralabError(f"module {name!r} already has LoRA; call unload_lora (or "
                               "load into it) instead of injecting twice")
        if not isinstance(mod, nn.Linear):
            raise LoralabError(f"target_modules matches module {name!r}, which is a "
                               f"{type(mod).__name__}, not an nn.Linear; only nn.Linear "
                               "layers can take LoRA here")
        names.append(name)
    if not names:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n
                  and not _inside_lora(n, wrapped)]
        shown = ", ".join(linear[:40]) + (f", ... ({len(linear)} in all)" if len(linear) > 40
                                           else "")
        raise LoralabError(f"target_modules={config.target_modules!r} matches no module; "
                           f"the model's nn.Linear modules are: {shown or '(none)'}")
    paths: dict[int, list[str]] = {}
    for name, mod in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(mod), []).append(name)
    for name in names:
        same = paths[id(model.get_submodule(name))]
        if len(same) > 1:
            raise LoralabError(f"module {name!r} is also reachable as {same[1]!r}; LoRA on a "
                               "module shared by several paths is not supported")
    return names


def _tied(model: nn.Module, names: list[str]) -> tuple[str, str] | None:
    """The first (module, other parameter) whose base weight is shared (e.g. tied lm_head)."""
    owners: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(pname)
    for name in names:
        mod = model.get_submodule(name)
        w = mod.base.weight if isinstance(mod, LoRALinear) else mod.weight
        others = [o for o in owners.get(id(w), []) if not o.startswith(f"{name}.")]
        if others:
            return name, others[0]
    return None


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def inject_lora(model: nn.Module, config: AdapterConfig,
                generator: torch.Generator | None = None) -> list[str]:
    """Wrap every ``nn.Linear`` that ``config.target_modules`` selects in a :class:`LoRALinear`.

    Matching is PEFT's: a list matches a module whose path equals an entry or ends with
    ``"." + entry``; a string is a regex that must match the whole path. Everything but the
    LoRA parameters (and biases, per ``config.bias``) is frozen. Returns the wrapped paths.
    All checks run before the model is touched, so an error leaves it unchanged.
    """
    names = find_targets(model, config)
    tied = _tied(model, names) if config.init == "pissa" else None
    if tied:
        raise LoralabError(f"init='pissa' rewrites the weight of {tied[0]!r}, which is shared "
                           f"with {tied[1]!r}; use init='default' or untie the weights")
    if config.init == "pissa":
        for name in names:
            shape = tuple(model.get_submodule(name).weight.shape)
            if config.r > min(shape):
                raise LoralabError(f"init='pissa' needs r <= min(d_out, d_in); module {name!r} "
                                   f"has weight {shape} and r={config.r}")
    for name in names:
        base = model.get_submodule(name)
        _set_module(model, name, LoRALinear(base, config.r, config.lora_alpha,
                                            config.lora_dropout, config.use_rslora,
                                            config.init, generator=generator))
    mark_only_lora_trainable(model, bias=config.bias)
    remember_config(model, config)
    return names


def mark_only_lora_trainable(model: nn.Module, bias: BiasKind = "none") -> None:
    """Freeze every parameter except ``lora_A`` / ``lora_B`` of each :class:`LoRALinear`.

    ``bias="all"`` also trains every bias in the model, ``"lora_only"`` the biases of the
    wrapped layers (PEFT's options). Parameters are picked by module type, not by name.
    """
    if bias not in get_args(BiasKind):
        raise LoralabError(f"bias={bias!r} is not allowed; use one of {get_args(BiasKind)}")
    for p in model.parameters():
        p.requires_grad_(False)
    for mod in model.modules():
        if isinstance(mod, LoRALinear):
            mod.lora_A.weight.requires_grad_(True)
            mod.lora_B.weight.requires_grad_(True)
            if bias == "lora_only" and mod.base.bias is not None:
                mod.base.bias.requires_grad_(True)
        elif bias == "all" and isinstance(getattr(mod, "bias", None), nn.Parameter):
            mod.bias.requires_grad_(True)
    if bias == "all":
        for mod in model.modules():
            if isinstance(mod, LoRALinear) and mod.base.bias is not None:
                mod.base.bias.requires_grad_(True)


def merge_lora(model: nn.Module) -> dict[str, float]:
    """Merge every :class:`LoRALinear` (idempotent); returns path -> rounding error.

    One :class:`LoRAPrecisionWarning` with the largest error is issued for fp16/bf16 bases.
    A layer whose weight is shared with another parameter (a tied ``lm_head``) is refused
    before anything changes, since merging into it would change the other one too.
    """
    layers = lora_layers(model)
    tied = _tied(model, [n for n, m in layers.items() if not m.merged])
    if tied:
        raise LoralabError(f"the weight of LoRA layer {tied[0]!r} is shared with {tied[1]!r}; "
                           "merging would change both, so keep this model unmerged")
    errors = {n: m.merge(warn=False) for n, m in layers.items()}
    low = [n for n, m in layers.items() if m.base.weight.dtype in _LOW_PRECISION]
    if low and max(errors[n] for n in low) > 0:
        worst = max(low, key=lambda n: errors[n])
        warnings.warn(f"merging LoRA into {len(low)} float16/bfloat16 weight(s) rounded them "
                      f"by up to {errors[worst]:.3g} (in {worst!r})", LoRAPrecisionWarning,
                      stacklevel=2)
    return errors


def unmerge_lora(model: nn.Module) -> None:
    """Unmerge every :class:`LoRALinear` (idempotent)."""
    for m in lora_layers(model).values():
        m.unmerge()


def unload_lora(model: nn.Module) -> nn.Module:
    """Merge each :class:`LoRALinear` and put its plain ``nn.Linear`` back; returns ``model``.

    The result has no LoRA modules left (its weights hold ``W0 + ΔW``); if ``model`` itself
    is a LoRALinear its merged base layer is returned.
    """
    layers = lora_layers(model)
    merge_lora(model)
    remember_config(model, None)
    for name, mod in layers.items():
        if name == "":
            return mod.base
        _set_module(model, name, mod.base)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"<path>.lora_A.weight": (r, d_in), "<path>.lora_B.weight": (d_out, r)}`` (detached)."""
    out: dict[str, torch.Tensor] = {}
    for name, mod in lora_layers(model).items():
        prefix = f"{name}." if name else ""
        out[f"{prefix}lora_A.weight"] = mod.lora_A.weight.detach()
        out[f"{prefix}lora_B.weight"] = mod.lora_B.weight.detach()
    return out


@dataclass(frozen=True)
class ParameterCount:
    """Parameter counts: ``trainable`` (requires_grad), ``total``, ``percent`` = 100·t/total."""

    trainable: int
    total: int
    percent: float


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count (shared parameters once) trainable and total parameters, as PEFT does."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return ParameterCount(trainable, total, 100.0 * trainable / total if total else 0.0)


def format_parameter_count(count: ParameterCount | nn.Module) -> str:
    """PEFT's ``print_trainable_parameters`` line, e.g.
    ``trainable params: 56 || all params: 204 || trainable%: 27.4510``."""
    if isinstance(count, nn.Module):
        count = count_parameters(count)
    return (f"trainable params: {count.trainable:,d} || all params: {count.total:,d} || "
            f"trainable%: {count.percent:.4f}")
