"""Hot-swapping an adapter in place: PEFT's ``hotswap_adapter`` and its ``_from_state_dict``.

A served model keeps its LoRA layers (and, with ``torch.compile``, its compiled graph) and
only the numbers change: adapter ``adapter_name``'s factors are overwritten with another
adapter's, and each layer's scale becomes the new adapter's ``s = α/r`` (``α/√r``). The name,
the modules and the parameters stay. PEFT's rules:

* the two configs must agree on ``use_rslora``, ``lora_dropout``, ``alpha_pattern`` and
  ``use_dora`` (these change the output beyond the tensors);
* every tensor of the new adapter must belong to a layer that has the adapter (a new target
  cannot be added in place); a layer the new adapter lacks is zeroed (``ΔW = 0``);
* a merged adapter is refused (unmerge first);
* shapes: equal, or a smaller rank, which is zero-padded (``B A`` is unchanged by zero rows of
  ``A`` and zero columns of ``B``; the layer keeps its rank and takes ``α' = s·r`` so that
  ``α'/r`` is the new scale), or a larger rank, for which the factors are replaced.

loralab also refuses a rank change on LoRA over a bare parameter (its experts interleave the
rank, so padding at the end would scramble them) and on grouped convolutions, and checks every
tensor (float, finite) before anything changes: a refused swap leaves the model as it was.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from .config import AdapterConfig, as_adapter_config
from .keys import PREFIX, Part, adapter_parts, parse_lora_key, peft_layer_path
from .layer import LoRALayer
from .loading import read_adapter
from .param import LoRAParameter
from .state import adapters_of, lora_layers, remember_config

__all__ = ["CHECKED_FIELDS", "hotswap_adapter", "hotswap_adapter_from_state_dict"]

CHECKED_FIELDS = ("use_rslora", "lora_dropout", "alpha_pattern", "use_dora")


def _pattern_key(path: str, layer: LoRALayer) -> str:
    """The path ``rank_pattern`` / ``alpha_pattern`` apply to (a parameter's key for
    :class:`LoRAParameter`)."""
    if isinstance(layer, LoRAParameter):
        while path.endswith(".base"):
            path = path[:-5]
        return f"{path}.{layer.parameter_name}"
    return path


def _check_configs(old: AdapterConfig | None, new: AdapterConfig) -> None:
    if old is None:
        return
    for name in CHECKED_FIELDS:
        if getattr(old, name) != getattr(new, name):
            raise LoralabError(f"cannot hot-swap: {name}={getattr(new, name)!r} in the new "
                               f"adapter but {getattr(old, name)!r} in the loaded one; these "
                               "must match (as PEFT)")


def _fit(layer: LoRALayer, key: str, part: Part, old: torch.Tensor, new: torch.Tensor) -> str:
    """``"copy"``, ``"pad"`` or ``"replace"`` for ``new`` over ``old`` (see the module doc)."""
    if not new.is_floating_point() or not bool(torch.isfinite(new).all()):
        raise LoralabError(f"cannot hot-swap: {key!r} is not a finite float tensor")
    if old.shape == new.shape:
        return "copy"
    rank_dim = {"A": 0, "B": 1}.get(part)
    same_rest = rank_dim is not None and old.ndim == new.ndim and all(
        o == n for i, (o, n) in enumerate(zip(old.shape, new.shape, strict=True))
        if i != rank_dim)
    grouped = getattr(layer.base, "groups", 1) > 1
    if not same_rest or isinstance(layer, LoRAParameter) or grouped:
        raise LoralabError(f"cannot hot-swap: {key!r} has shape {tuple(new.shape)} but the "
                           f"loaded adapter's is {tuple(old.shape)}; only the rank may differ "
                           "(and not on target_parameters or grouped convolutions)")
    return "pad" if new.shape[rank_dim] < old.shape[rank_dim] else "replace"


def _plan(model: nn.Module, state_dict: Mapping[str, torch.Tensor], adapter: str
          ) -> tuple[dict[str, LoRALayer], list[tuple[LoRALayer, Part, torch.Tensor, str]]]:
    layers = {n: m for n, m in lora_layers(model).items() if adapter in m.r}
    if not layers:
        raise LoralabError(f"cannot hot-swap: the model has no adapter named {adapter!r}")
    if any(adapter in m.merged_adapters for m in layers.values()):
        raise LoralabError(f"cannot hot-swap adapter {adapter!r}: it is merged; call "
                           "unmerge_lora(model) first")
    by_peft = {peft_layer_path(layers, n): n for n in layers}
    plan = []
    for key, t in state_dict.items():
        parsed = parse_lora_key(key, PREFIX if key.startswith(PREFIX) else "")
        if parsed is None or parsed[0] not in by_peft:
            raise LoralabError(f"cannot hot-swap: key {key!r} is no LoRA factor of a layer "
                               f"with adapter {adapter!r} (a new target cannot be added in "
                               "place)")
        layer = layers[by_peft[parsed[0]]]
        parts = adapter_parts(layer, adapter)
        if parsed[1] not in parts:
            raise LoralabError(f"cannot hot-swap: key {key!r} has no counterpart in the loaded "
                               "adapter (lora_bias or DoRA differs)")
        plan.append((layer, parsed[1], t, _fit(layer, key, parsed[1], parts[parsed[1]], t)))
    return layers, plan


@torch.no_grad()
def _apply(layers: dict[str, LoRALayer], plan: list, adapter: str,
           config: AdapterConfig) -> None:
    swapped = {id(layer) for layer, *_ in plan}
    for layer in layers.values():
        if id(layer) not in swapped:         # not in the new adapter: ΔW = 0
            for part, p in adapter_parts(layer, adapter).items():
                if part != "magnitude":
                    p.zero_()
    for layer, part, t, how in plan:
        p = adapter_parts(layer, adapter)[part]
        t = t.to(device=p.device, dtype=p.dtype)
        if how == "copy":
            p.copy_(t)
        elif how == "replace":
            p.data = t.clone()
        else:
            p.zero_()
            p[tuple(slice(0, n) for n in t.shape)].copy_(t)
    new_rank = {id(layer): t.shape[0] // getattr(layer, "num_experts", 1)
                for layer, part, t, _ in plan if part == "A"}
    root = math.sqrt if config.use_rslora else float
    for path, layer in layers.items():
        if id(layer) not in swapped:
            if layer.use_dora[adapter]:          # ΔW = 0 and m = ‖W0‖_c: the base layer
                layer.lora_magnitude_vector[adapter].copy_(layer.weight_norm(adapter))
            continue
        key = _pattern_key(path, layer)
        s = config.alpha_for(key) / root(config.rank_for(key))   # the new adapter's scale
        if new_rank.get(id(layer), 0) > layer.r[adapter]:        # factors replaced
            layer.r[adapter] = new_rank[id(layer)]
        layer.set_scale(adapter, s * root(layer.r[adapter]), config.use_rslora)


def hotswap_adapter_from_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                                    adapter_name: str, config: AdapterConfig | Any) -> None:
    """Overwrite adapter ``adapter_name`` with the tensors of ``state_dict`` (PEFT's file keys,
    ``base_model.model.<path>.lora_A.weight``, or :func:`~loralab.lora.lora_state_dict`'s
    without the prefix) and the scales of ``config`` (an :class:`AdapterConfig`, a
    ``peft.LoraConfig`` or a dict). Rules in the module doc; all checked first."""
    config = as_adapter_config(config)
    _check_configs(adapters_of(model).configs.get(adapter_name), config)
    layers, plan = _plan(model, state_dict, adapter_name)
    _apply(layers, plan, adapter_name, config)
    remember_config(model, config, adapter_name)


def hotswap_adapter(model: nn.Module, folder: str | os.PathLike[str],
                    adapter_name: str = "default") -> None:
    """Overwrite adapter ``adapter_name`` with the adapter saved in ``folder`` (PEFT's
    ``hotswap_adapter``): the same layers, new numbers (module doc)."""
    config, tensors = read_adapter(folder)
    hotswap_adapter_from_state_dict(model, tensors, adapter_name, config)
