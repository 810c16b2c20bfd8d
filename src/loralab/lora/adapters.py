"""Adapters on disk in Hugging Face PEFT's format: ``adapter_config.json`` + safetensors.

A folder written by :func:`save_adapter` loads with ``peft.PeftModel.from_pretrained(base,
folder)`` and gives the same outputs; :func:`loralab.lora.load_adapter` reads folders PEFT
saved. Tensors are named as PEFT names them::

    base_model.model.<path>.lora_A.weight           (r, d_in)      Linear, Conv1D, conv
    base_model.model.<path>.lora_B.weight           (d_out, r)     (+ .lora_B.bias: lora_bias)
    base_model.model.<path>.lora_embedding_A        (r, V)         Embedding
    base_model.model.<path>.lora_embedding_B        (d, r)
    base_model.model.<path>.base_layer.bias         (d_out,)       bias="all"/"lora_only"
    base_model.model.<other module>.bias                           bias="all"
    base_model.model.<saved module>.<its state>                    modules_to_save, heads

Everything the adapter trains is saved: a parameter left trainable outside LoRA (a head
unfrozen by hand) is saved with its module, which is listed in ``modules_to_save`` so that
PEFT and loralab load it back. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save as st_save
from torch import nn

from ..errors import LoralabError
from ..fileio import atomic_dir, atomic_write, atomic_write_text, check_output_dir
from .config import AdapterConfig, config_to_peft
from .embedding import LoRAEmbedding
from .layer import LoRALayer
from .state import injected_config, lora_layers, trained_copies
from .targets import selected_names

__all__ = ["CONFIG_NAME", "PREFIX", "WEIGHTS_NAME", "adapter_state", "save_adapter"]

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."


def factor_names(layer: LoRALayer) -> tuple[str, str]:
    """The names of A and B inside a layer, as PEFT stores them."""
    if isinstance(layer, LoRAEmbedding):
        return "lora_embedding_A", "lora_embedding_B"
    return "lora_A.weight", "lora_B.weight"


def _peft_name(param_path: str, lora_names: set[str]) -> str:
    """Our parameter path -> PEFT's (``<m>.base.bias`` -> ``<m>.base_layer.bias``)."""
    module, _, leaf = param_path.rpartition(".")
    if module.endswith(".base") and module[: -len(".base")] in lora_names:
        module = module[: -len(".base")] + ".base_layer"
    elif module == "base" and "" in lora_names:
        module = "base_layer"
    return PREFIX + (f"{module}.{leaf}" if module else leaf)


def _lora_tensors(model: nn.Module, bias: str) -> dict[str, torch.Tensor]:
    layers = lora_layers(model)
    out: dict[str, torch.Tensor] = {}
    for name, mod in layers.items():
        a_name, b_name = factor_names(mod)
        a, b = mod.factors()
        out[f"{PREFIX}{name}.{a_name}"], out[f"{PREFIX}{name}.{b_name}"] = a, b
        if mod.lora_bias_param() is not None:
            out[f"{PREFIX}{name}.lora_B.bias"] = mod.lora_bias_param()
    if bias != "none":
        wrapped = {id(m.bias) for m in layers.values() if m.bias is not None}
        copies = list(trained_copies(model))   # their biases are saved with their state
        for pname, p in model.named_parameters():
            if pname.endswith("bias") and (bias == "all" or id(p) in wrapped) \
                    and not any(pname.startswith(f"{c}.") for c in copies):
                out[_peft_name(pname, set(layers))] = p
    return out


def _hand_trained(model: nn.Module, covered: set[int]) -> list[str]:
    """Modules holding a trainable parameter that neither LoRA nor the config covers."""
    layers = lora_layers(model)
    out: list[str] = []
    for pname, p in model.named_parameters():
        if not p.requires_grad or id(p) in covered:
            continue
        owner = pname.rpartition(".")[0]
        inside = next((n for n in layers if owner == n or owner.startswith(f"{n}.")), None)
        if inside is not None:
            raise LoralabError(f"parameter {pname!r} of LoRA layer {inside!r} is trainable but "
                               "is not part of a LoRA adapter; freeze it (bias='all' or "
                               "'lora_only' trains biases)")
        if owner and not any(owner == o or owner.startswith(f"{o}.") for o in out):
            out.append(owner)
    return out


def adapter_state(model: nn.Module, bias: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every tensor the adapter trains under its PEFT name, and the saved modules' paths
    (``modules_to_save`` copies first, then modules unfrozen by hand)."""
    out = _lora_tensors(model, bias)
    copies = trained_copies(model)
    for path, mod in copies.items():
        for key, t in mod.module.state_dict().items():
            out[f"{PREFIX}{path}.{key}"] = t
    covered = {id(t) for t in out.values()} | {id(p) for c in copies.values()
                                               for p in c.parameters()}
    extra = _hand_trained(model, covered)
    for path in extra:
        for key, t in model.get_submodule(path).state_dict().items():
            out[f"{PREFIX}{path}.{key}"] = t
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in out.items()}
    return tensors, [*copies, *extra]


def _setting(layer: LoRALayer) -> tuple:
    return (layer.lora_dropout_p, layer.use_rslora, layer.init_lora_weights, layer.lora_bias)


def _stored_fits(model: nn.Module, stored: AdapterConfig, layers: dict[str, LoRALayer],
                 saved: list[str]) -> bool:
    names = selected_names(model, stored, skip=[*layers, *saved])
    return sorted(names) == sorted(layers) and all(
        (m.r, m.lora_alpha) == (stored.rank_for(n), stored.alpha_for(n))
        for n, m in layers.items())


def config_for(model: nn.Module, saved: list[str]) -> AdapterConfig:
    """The config that rebuilds ``model``'s adapter: the injected one when it selects exactly
    the wrapped layers with their ranks, else one written from the layers themselves."""
    layers = lora_layers(model)
    first = next(iter(layers.values()))
    for name, m in layers.items():
        if _setting(m) != _setting(first):
            raise LoralabError(f"LoRA layer {name!r} has (dropout, use_rslora, init, "
                               f"lora_bias) = {_setting(m)}, unlike the others; one adapter "
                               "file holds one such setting")
    stored = injected_config(model) or AdapterConfig(target_modules=sorted(layers))
    base = dict(fan_in_fan_out=any(getattr(m, "fan_in_fan_out", False) for m in layers.values()),
                lora_dropout=first.lora_dropout_p, use_rslora=first.use_rslora,
                init_lora_weights=first.init_lora_weights, lora_bias=first.lora_bias,
                modules_to_save=saved or None)
    if stored.target_modules != "all-linear" and _stored_fits(model, stored, layers, saved):
        return replace(stored, **base)
    r = Counter(m.r for m in layers.values()).most_common(1)[0][0]
    alpha = Counter(m.lora_alpha for m in layers.values()).most_common(1)[0][0]
    return replace(stored, **base, r=r, lora_alpha=alpha, target_modules=sorted(layers),
                   exclude_modules=None, layers_to_transform=None, layers_pattern=None,
                   rank_pattern={re.escape(n): m.r for n, m in layers.items() if m.r != r},
                   alpha_pattern={re.escape(n): m.lora_alpha for n, m in layers.items()
                                  if m.lora_alpha != alpha})


def save_adapter(model: nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``folder``.

    The files are PEFT's: ``peft.PeftModel.from_pretrained(base, folder)`` rebuilds the same
    model. A new folder appears whole or not at all; in an existing folder each file is
    replaced atomically and other files are kept. Returns the folder.
    """
    layers = lora_layers(model)
    if not layers:
        raise LoralabError("the model has no LoRA layers to save; call inject_lora first")
    if "" in layers:
        raise LoralabError("the model itself is a LoRA layer; save a module that contains it")
    stored = injected_config(model)
    tensors, saved = adapter_state(model, stored.bias if stored is not None else "none")
    config = config_for(model, saved)
    if config.base_model_name_or_path is None:
        name = getattr(model, "name_or_path", None)
        config = replace(config, base_model_name_or_path=name or None)
    blob = st_save(tensors, metadata={"format": "pt"})
    text = json.dumps(config_to_peft(config), indent=2, sort_keys=True) + "\n"
    dest = Path(folder)
    if dest.exists():
        check_output_dir(dest)
        atomic_write(dest / WEIGHTS_NAME, lambda fh: fh.write(blob))
        atomic_write_text(dest / CONFIG_NAME, text)
    else:
        with atomic_dir(dest) as tmp:
            (tmp / WEIGHTS_NAME).write_bytes(blob)
            (tmp / CONFIG_NAME).write_text(text, encoding="utf-8")
    return dest
