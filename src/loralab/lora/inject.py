"""Injection by module name, merge/unmerge/unload, and parameter counting.

:func:`inject_lora` wraps every module the config selects (PEFT's rules, see
:mod:`loralab.lora.targets`) in the LoRA layer of its type, wraps ``modules_to_save`` (and
the task's heads) in trainable copies, and freezes everything else. All checks run before
the model is touched, so an error leaves it as it was.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LoralabError
from ..quantizer import keep_float_compute
from .config import BIASES, AdapterConfig, BiasKind, as_adapter_config
from .conv import LoRAConv, conv_refusal
from .embedding import LoRAEmbedding
from .hf import guard_save_pretrained, unguard_save_pretrained
from .keys import adapter_tensors, peft_layer_path
from .layer import LOW_PRECISION, LoRALayer, LoRAPrecisionWarning, base_module
from .linear import LoRALinear
from .mha import LoRAMultiheadAttention
from .param import LoRAParameter
from .param_targets import ParamTarget, find_param_targets
from .qlora import is_quantized
from .saved import TrainedCopy
from .state import adapters_of, lora_layers, remember_config, trained_copies
from .targets import find_targets, lora_kind, saved_module_paths
from .tied import attach_heads, input_path, tie_names, tie_saved, tied_heads
from .tokens import TrainableTokens, check_token_merge, plan_tokens, token_wrappers, wrap_tokens

__all__ = [
    "ParameterCount",
    "count_parameters",
    "format_parameter_count",
    "inject_lora",
    "kind_refusal",
    "lora_state_dict",
    "mark_only_lora_trainable",
    "merge_lora",
    "set_module",
    "sync_active",
    "unload",
    "unload_lora",
    "unmerge_lora",
]

_LAYER: dict[str, type[LoRALayer]] = {"linear": LoRALinear, "conv1d_hf": LoRALinear,
                                      "embedding": LoRAEmbedding, "conv": LoRAConv,
                                      "mha": LoRAMultiheadAttention}


def _tied(model: nn.Module, names: list[str]) -> tuple[str, str] | None:
    """The first (module, other parameter) whose base weight is shared (e.g. tied lm_head)."""
    owners: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(pname)
    heads = tied_heads(model)
    for name in names:
        layer = model.get_submodule(name)
        w = layer.weight            # a LoRA layer's: its base weight or parameter
        followers = [h for h, m in heads.items() if m.source is layer]   # merged once for all
        others = [o for o in owners.get(id(w), []) if not o.startswith(f"{name}.")
                  and not any(o.startswith(f"{h}.") for h in followers)]
        if others:
            return name, others[0]
    return None


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the module at path ``name`` by ``new``."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def kind_refusal(mod: nn.Module, r: int, use_dora: bool) -> str | None:
    """Why an adapter (rank ``r``, DoRA or not) cannot go on the layer type of ``mod`` (the
    plain module), or None: named by field and layer type, checked before any shape."""
    layer = _LAYER.get(lora_kind(mod) or "")
    if layer is None:
        return None
    if use_dora and not layer.supports_dora:
        return (f"use_dora=True is not supported on {type(mod).__name__}; DoRA works on "
                "Linear, Conv1D, Embedding and Conv1d/2d/3d layers")
    return conv_refusal(mod, r, use_dora) if layer is LoRAConv else None


def _check_layer(model: nn.Module, name: str, config: AdapterConfig, adapter_name: str) -> None:
    """The per-layer checks a layer's constructor would make, before anything changes."""
    mod, r = model.get_submodule(name), config.rank_for(name)
    if isinstance(mod, LoRALayer) and adapter_name in mod.r:
        raise LoralabError(f"module {name!r} already has LoRA adapter {adapter_name!r}; give "
                           "another adapter_name or call unload_lora first")
    if isinstance(mod, LoRALayer) and mod.merged:
        raise LoralabError(f"LoRA layer {name!r} is merged; unmerge_lora(model) first")
    mod = base_module(mod)
    layer = _LAYER[lora_kind(mod)]  # type: ignore[index]
    if (why := kind_refusal(mod, r, config.use_dora)) is not None:
        raise LoralabError(f"module {name!r}: {why}")
    if config.lora_bias and not layer.supports_lora_bias:
        what = "nn.Embedding" if isinstance(mod, nn.Embedding) else type(mod).__name__
        raise LoralabError(f"lora_bias=True is not supported on {what} ({name!r}); "
                           "PEFT refuses it too")
    init, split = config.init_lora_weights, config.init.splits_base
    if is_quantized(mod) and (split or config.use_dora):
        what = f"init_lora_weights={init!r}" if split else "use_dora=True"
        raise LoralabError(f"{what} needs the full-precision weight, but {name!r} is already "
                           f"quantized ({type(mod).__name__}); apply it to the float model "
                           "(PEFT refuses too)")
    if split:
        if not layer.supports_split_init:
            raise LoralabError(f"init_lora_weights={init!r} works on Linear/Conv1D layers; "
                               f"{name!r} is a {type(mod).__name__}")
        if r > min(mod.weight.shape):
            raise LoralabError(f"init_lora_weights={init!r} needs r <= min(d_out, d_in); "
                               f"module {name!r} has weight {tuple(mod.weight.shape)} and r={r}")


def _fan_in_fan_out(config: AdapterConfig, kinds: set[str]) -> None:
    """PEFT's correction, with its warning: the flag follows the layer type."""
    if config.fan_in_fan_out and "linear" in kinds:
        warnings.warn("fan_in_fan_out=True but the target is an nn.Linear; using False for "
                      "it (as PEFT does)", UserWarning, stacklevel=3)
    if not config.fan_in_fan_out and "conv1d_hf" in kinds:
        warnings.warn("fan_in_fan_out=False but the target is a Conv1D (GPT-2); using True "
                      "for it (as PEFT does)", UserWarning, stacklevel=3)


def inject_lora(model: nn.Module, config: AdapterConfig | object,
                generator: torch.Generator | None = None, *, adapter_name: str = "default",
                autocast_adapter_dtype: bool = True) -> list[str]:
    """Put LoRA adapter ``adapter_name`` on every layer ``config`` selects; returns the paths.

    ``config``: an :class:`AdapterConfig`, a ``peft.LoraConfig`` or a dict of its fields.
    Each selected ``nn.Linear`` / ``Conv1D`` becomes a :class:`LoRALinear`, ``nn.Embedding``
    a :class:`LoRAEmbedding`, ``nn.Conv1d``/``2d``/``3d`` a :class:`LoRAConv`, with the
    module's own r and α (``rank_pattern``, ``alpha_pattern``); a layer that already has LoRA
    gets the new named adapter beside its others. ``modules_to_save`` and the heads of
    ``task_type`` become trainable copies. The first adapter is the active one (see
    :func:`set_adapter`); the active adapters' factors (and biases, per ``bias``) train,
    everything else is frozen. ``autocast_adapter_dtype``: factors in float32 over a
    float16/bfloat16 base (PEFT's default); ``False`` keeps the base's dtype.
    """
    config = as_adapter_config(config)
    state = adapters_of(model)
    if adapter_name in state.configs:
        raise LoralabError(f"the model already has an adapter named {adapter_name!r}; give "
                           "another adapter_name or delete_adapter it first")
    existing = lora_layers(model)
    saved, shared_heads = tie_saved(model, config,
                                    saved_module_paths(model, config, list(existing)))
    names = find_targets(model, config, skip=[*existing, *saved, *shared_heads],
                         allow_lora=True) if config.target_modules != [] else []
    names, heads = tie_names(model, config, names)
    emb = input_path(model)
    params = _param_targets(model, config, state.configs)
    for name in names:
        _check_layer(model, name, config, adapter_name)
    if config.init.splits_base and (tied := _tied(model, names)):
        raise LoralabError(f"init_lora_weights={config.init_lora_weights!r} rewrites the "
                           f"weight of {tied[0]!r}, which is shared with {tied[1]!r}; use True "
                           "or untie the weights")
    tokens = plan_tokens(model, config, names)
    kinds = {lora_kind(base_module(model.get_submodule(n))) for n in names}
    _fan_in_fan_out(config, kinds)   # type: ignore[arg-type]
    for name in names:
        mod = model.get_submodule(name)
        spec = config.layer_spec(name, autocast_adapter_dtype)
        if isinstance(mod, LoRALayer):
            mod.add_adapter(adapter_name, spec, generator=generator)
        else:
            set_module(model, name, _LAYER[lora_kind(mod)](  # type: ignore[index]
                mod, spec, generator=generator, adapter_name=adapter_name))
    _wrap_params(model, config, params, adapter_name, autocast_adapter_dtype, generator)
    for name in saved:
        if not isinstance(model.get_submodule(name), TrainedCopy):
            set_module(model, name, TrainedCopy(model.get_submodule(name)))
    attach_heads(model, emb, heads, shared_heads)
    wrap_tokens(model, tokens, adapter_name)
    remember_config(model, config, adapter_name)
    sync_active(model)
    mark_only_lora_trainable(model, bias=config.bias)
    guard_save_pretrained(model)
    keep_float_compute(model)      # every 4-bit layer, targeted or not (loralab.lora.qlora)
    return names + [t.path for t in params]


def _param_targets(model: nn.Module, config: AdapterConfig,
                   others: dict[str, AdapterConfig]) -> list[ParamTarget]:
    """``config.target_parameters`` resolved and checked (before anything changes)."""
    if not config.target_parameters:
        return []
    for other, c in others.items():
        if c.target_parameters and set(c.target_parameters) != set(config.target_parameters):
            raise LoralabError(f"target_parameters={config.target_parameters!r} differs from "
                               f"adapter {other!r}'s {c.target_parameters!r}; every adapter "
                               "with target_parameters must target the same parameters (PEFT)")
    targets = find_param_targets(model, config.target_parameters)
    layers = lora_layers(model)
    merged = [t.path for t in targets if t.path in layers and layers[t.path].merged]
    if merged:
        raise LoralabError(f"LoRA layer {merged[0]!r} is merged; unmerge_lora(model) first")
    return targets


def _wrap_params(model: nn.Module, config: AdapterConfig, params: list[ParamTarget],
                 adapter_name: str, autocast: bool, generator: torch.Generator | None) -> None:
    """Put the adapter on each targeted parameter, innermost first (PEFT's nesting)."""
    for t in sorted(params, key=lambda t: -t.depth):
        spec = config.layer_spec(t.key, autocast)
        try:
            current = model.get_submodule(t.path)
        except AttributeError:      # a new inner wrapper: its path appears once wrapped
            current = None
        if isinstance(current, LoRAParameter) and current.parameter_name == t.parameter:
            current.add_adapter(adapter_name, spec, generator=generator)
        else:
            set_module(model, t.module, LoRAParameter(model.get_submodule(t.module),
                                                      t.parameter, spec, generator=generator,
                                                      adapter_name=adapter_name))


def sync_active(model: nn.Module) -> None:
    """Give every LoRA layer the model's active adapter names (a layer skips those it lacks)."""
    active = adapters_of(model).active
    for layer in lora_layers(model).values():
        layer.active_adapters = [a for a in active if a in layer.r]
    for tok in token_wrappers(model).values():
        tok.active_adapters = [a for a in active if a in tok.deltas()]


def mark_only_lora_trainable(model: nn.Module, bias: BiasKind = "none") -> None:
    """Freeze every parameter except the active adapters' factors and the trained copies.

    ``bias="all"`` also trains every bias in the model, ``"lora_only"`` the biases of the
    wrapped layers (PEFT's options). Parameters are picked by module type, not by name.
    """
    if bias not in BIASES:
        raise LoralabError(f"bias={bias!r} is not allowed; use one of {BIASES}")
    for p in model.parameters():
        p.requires_grad_(False)
    for mod in model.modules():
        if isinstance(mod, LoRALayer):
            for p in mod.trainable():
                p.requires_grad_(True)
            if bias == "lora_only" and mod.bias is not None:
                mod.bias.requires_grad_(True)
        elif isinstance(mod, TrainedCopy):
            mod.module.requires_grad_(True)
        elif isinstance(mod, TrainableTokens):
            for p in mod.trainable():
                p.requires_grad_(True)
        elif bias == "all" and isinstance(getattr(mod, "bias", None), nn.Parameter):
            mod.bias.requires_grad_(True)
    for mod in trained_copies(model).values():
        mod.original_module.requires_grad_(False)


def merge_lora(model: nn.Module, adapter_names: list[str] | None = None) -> dict[str, float]:
    """Merge the active adapters (or ``adapter_names``) of every LoRA layer (idempotent);
    returns path -> rounding error.

    One :class:`LoRAPrecisionWarning` with the largest error is issued for fp16/bf16 bases.
    A layer whose weight is shared with another parameter (a tied ``lm_head``) is refused
    before anything changes, since merging into it would change the other one too; so is a
    non-finite update (each layer's is checked before any is written).
    """
    layers = lora_layers(model)
    if adapter_names is not None:
        adapters_of(model).check(adapter_names)
    check_token_merge(model)
    refused = next(((n, why) for n, m in layers.items() if not m.merged
                    and (why := m.merge_refusal()) is not None), None)
    if refused:
        raise LoralabError(f"LoRA layer {refused[0]!r}: {refused[1]}")
    tied = _tied(model, [n for n, m in layers.items() if not m.merged])
    if tied:
        raise LoralabError(f"the weight of LoRA layer {tied[0]!r} is shared with {tied[1]!r}; "
                           "merging would change both, so keep this model unmerged")
    for name, m in layers.items():
        for a in adapter_names or m.active_adapters:
            if a in m.r and a not in m.merged_adapters and \
                    not bool(torch.isfinite(m.delta_weight(a)).all()):
                raise LoralabError(f"LoRA layer {name!r} has NaN/Inf in adapter {a!r} "
                                   "(training diverged?); refusing to merge it")
    errors = {n: m.merge(warn=False, adapter_names=[a for a in (adapter_names or
                                                                 m.active_adapters)
                                                    if a in m.r] or None)
              for n, m in layers.items()}
    for tok in token_wrappers(model).values():
        tok.merge()
    low = [n for n, m in layers.items() if m.weight.dtype in LOW_PRECISION]
    if low and max(errors[n] for n in low) > 0:
        worst = max(low, key=lambda n: errors[n])
        warnings.warn(f"merging LoRA into {len(low)} float16/bfloat16 weight(s) rounded them "
                      f"by up to {errors[worst]:.3g} (in {worst!r})", LoRAPrecisionWarning,
                      stacklevel=2)
    return errors


def unmerge_lora(model: nn.Module) -> None:
    """Unmerge every LoRA layer (idempotent)."""
    for m in lora_layers(model).values():
        m.unmerge()
    for tok in token_wrappers(model).values():
        tok.unmerge()


def _remove(model: nn.Module, merge: bool) -> nn.Module:
    layers = lora_layers(model)
    if merge:
        merge_lora(model)
    else:
        unmerge_lora(model)
    remember_config(model, None)
    unguard_save_pretrained(model)
    for name, mod in reversed(layers.items()):     # nested wrappers: the inner one first
        if name == "":
            return mod.base
        set_module(model, name, mod.base)
    for name, copy in trained_copies(model).items():
        set_module(model, name, copy.module)      # PEFT keeps the trained copy
    for name, tok in token_wrappers(model).items():
        set_module(model, name, tok.base)         # merged rows stay (unload_lora)
    for name, head in tied_heads(model).items():
        set_module(model, name, head.base)        # the shared weight holds ΔE when merged
    return model


def unload_lora(model: nn.Module) -> nn.Module:
    """Merge the active adapters and put each base module back (PEFT's
    ``merge_and_unload``); returns ``model``, whose weights now hold ``W0 + ΔW``. Trained
    copies replace their originals. If ``model`` itself is a LoRA layer its base is
    returned."""
    return _remove(model, merge=True)


def unload(model: nn.Module) -> nn.Module:
    """Remove LoRA without merging (PEFT's ``unload``): the base modules come back as they
    were (merged adapters are unmerged first); trained copies replace their originals."""
    return _remove(model, merge=False)


def lora_state_dict(model: nn.Module, adapter_name: str | None = None
                    ) -> dict[str, torch.Tensor]:
    """Adapter ``adapter_name``'s tensors (default: the first active) under PEFT's on-disk
    names without the prefix: ``{"<path>.lora_A.weight": A, "<path>.lora_B.weight": B}``
    (``lora_embedding_A`` / ``_B`` for embeddings, ``lora_magnitude_vector`` with DoRA,
    ``lora_B.bias`` with ``lora_bias``): the keys of :mod:`loralab.lora.keys`."""
    out: dict[str, torch.Tensor] = {}
    layers = lora_layers(model)
    for name, mod in layers.items():
        a_name = adapter_name or (mod.active_adapters or mod.adapter_names)[0]
        if a_name not in mod.r:
            continue
        path = peft_layer_path(layers, name)
        out.update({k: t.detach() for k, t in adapter_tensors(path, mod, a_name, "").items()})
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
