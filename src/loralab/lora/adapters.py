"""Adapters on disk in Hugging Face PEFT's format: ``adapter_config.json`` + safetensors.

A folder written by :func:`save_adapter` loads with ``peft.PeftModel.from_pretrained(base,
folder)`` and gives the same outputs; :func:`loralab.lora.load_adapter` reads folders PEFT
saved. Tensors are named as PEFT names them (:mod:`loralab.lora.keys`)::

    base_model.model.<path>.lora_A.weight           (r, d_in)      Linear, Conv1D, conv
    base_model.model.<path>.lora_B.weight           (d_out, r)     (+ .lora_B.bias: lora_bias)
    base_model.model.<path>.lora_embedding_A        (r, V)         Embedding
    base_model.model.<path>.lora_embedding_B        (d, r)
    base_model.model.<path>.lora_magnitude_vector   (d_out,)       DoRA
    base_model.model.<path>.base_layer.bias         (d_out,)       bias="all"/"lora_only"
    base_model.model.<other module>.bias                           bias="all"
    base_model.model.<saved module>.<its state>                    modules_to_save, heads
    base_model.model.<emb>.base_layer.weight        (V, d)         save_embedding_layers
    base_model.model.<emb>.token_adapter.trainable_tokens_delta    trainable_token_indices

Each named adapter has its own folder, PEFT's layout: ``"default"`` in the folder itself,
adapter ``name`` in ``<folder>/<name>/``. Everything the adapter trains is saved: a
parameter left trainable outside LoRA (a head unfrozen by hand) is saved with its module,
which is listed in ``modules_to_save`` so that PEFT and loralab load it back. No pickle.
"""

from __future__ import annotations

import hashlib
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
from .full_weights import SaveEmbeddings, embedding_tensors
from .keys import PREFIX, adapter_tensors, lora_key, peft_layer_path, peft_param_key
from .layer import LoRALayer
from .linear import LoRALinear
from .param import LoRAParameter
from .state import injected_config, lora_layers, trained_copies
from .targets import selected_names
from .tied import tied_heads
from .tokens import token_key, token_wrappers

__all__ = ["CONFIG_NAME", "PREFIX", "WEIGHTS_NAME", "adapter_state", "save_adapter"]

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def _lora_tensors(model: nn.Module, bias: str, adapter: str) -> dict[str, torch.Tensor]:
    layers = lora_layers(model)
    out: dict[str, torch.Tensor] = {}
    for name, mod in layers.items():
        if adapter in mod.r:
            out.update(adapter_tensors(peft_layer_path(layers, name), mod, adapter))
    if bias != "none":
        wrapped = {id(m.bias) for m in layers.values() if m.bias is not None}
        copies = list(trained_copies(model))   # their biases are saved with their state
        for pname, p in model.named_parameters():
            if pname.endswith("bias") and (bias == "all" or id(p) in wrapped) \
                    and not any(pname.startswith(f"{c}.") for c in copies):
                out[peft_param_key(pname, set(layers))] = p
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


def adapter_state(model: nn.Module, bias: str, adapter: str = "default"
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every tensor adapter ``adapter`` trains under its PEFT name, and the saved modules'
    paths (``modules_to_save`` copies first, then modules unfrozen by hand)."""
    out = _lora_tensors(model, bias, adapter)
    for path, head in tied_heads(model).items():           # ensure_weight_tying: PEFT's keys
        if adapter in head.source.r:
            a, b = head.factors(adapter)
            out[lora_key(path, "A")], out[lora_key(path, "B")] = a.clone(), b.clone()
    for path, tok in token_wrappers(model).items():
        if tok.tied_to is None and adapter in tok.trainable_tokens_delta:
            out[token_key(path)] = tok.trainable_tokens_delta[adapter]
    copies = trained_copies(model)
    for path, mod in copies.items():
        for key, t in mod.module.state_dict().items():
            out[peft_param_key(f"{path}.{key}", ())] = t
    covered = {id(t) for t in out.values()} | {id(p) for c in copies.values()
                                               for p in c.parameters()} | {
        id(p) for m in lora_layers(model).values() for p in m.trainable(m.adapter_names)}
    extra = _hand_trained(model, covered)
    for path in extra:
        for key, t in model.get_submodule(path).state_dict().items():
            out[peft_param_key(f"{path}.{key}", ())] = t
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in out.items():            # a tied weight saved twice: two tensors on disk
        t = v.detach().to("cpu").contiguous()
        tensors[k] = t.clone() if t.data_ptr() in seen else t
        seen.add(t.data_ptr())
    return tensors, [*copies, *extra]


def _setting(layer: LoRALayer, a: str) -> tuple:
    return (layer.dropout_p(a), layer.use_rslora[a], layer.init[a].peft_value,
            layer.lora_bias[a], layer.use_dora[a])


def _stored_fits(model: nn.Module, stored: AdapterConfig, layers: dict[str, LoRALayer],
                 saved: list[str], a: str) -> bool:
    names = selected_names(model, stored, skip=[*lora_layers(model), *saved])
    return sorted(names) == sorted(layers) and all(
        (m.r[a], m.lora_alpha[a]) == (stored.rank_for(n), stored.alpha_for(n))
        for n, m in layers.items())


def config_for(model: nn.Module, saved: list[str], a: str = "default") -> AdapterConfig:
    """The config that rebuilds adapter ``a``: the injected one when it selects exactly the
    layers that have ``a`` with their ranks, else one written from the layers themselves."""
    every = {n: m for n, m in lora_layers(model).items() if a in m.r}
    first = next(iter(every.values()))
    for name, m in every.items():
        if _setting(m, a) != _setting(first, a):
            raise LoralabError(f"LoRA layer {name!r} has (dropout, use_rslora, init, "
                               f"lora_bias, use_dora) = {_setting(m, a)}, unlike the others; "
                               "one adapter file holds one such setting")
    layers = {n: m for n, m in every.items() if not isinstance(m, LoRAParameter)
              and not any(n.startswith(f"{o}.base.") for o in every)}   # an MHA's out_proj
    stored = injected_config(model, a) or AdapterConfig(target_modules=sorted(layers))
    if not layers:                      # parameters only (target_parameters)
        return replace(stored, lora_dropout=0.0, init_lora_weights=first.init[a].peft_value,
                       modules_to_save=saved or None)
    base = dict(fan_in_fan_out=any(isinstance(m, LoRALinear) and m.fan_in_fan_out
                                   for m in layers.values()),
                lora_dropout=first.dropout_p(a), use_rslora=first.use_rslora[a],
                init_lora_weights=first.init[a].peft_value, lora_bias=first.lora_bias[a],
                use_dora=first.use_dora[a], modules_to_save=saved or None)
    if stored.target_modules != "all-linear" and _stored_fits(model, stored, layers, saved, a):
        return replace(stored, **base)
    r = Counter(m.r[a] for m in layers.values()).most_common(1)[0][0]
    alpha = Counter(m.lora_alpha[a] for m in layers.values()).most_common(1)[0][0]
    return replace(stored, **base, r=r, lora_alpha=alpha, target_modules=sorted(layers),
                   exclude_modules=None, layers_to_transform=None, layers_pattern=None,
                   rank_pattern={re.escape(n): m.r[a] for n, m in layers.items() if m.r[a] != r},
                   alpha_pattern={re.escape(n): m.lora_alpha[a] for n, m in layers.items()
                                  if m.lora_alpha[a] != alpha})


_MARK = "loralab_adapter_config_sha256"     # safetensors metadata: the config written with it


def _written_by_loralab(folder: Path) -> bool:
    """Whether ``folder``'s two files are a pair loralab wrote: the safetensors header
    records the SHA-256 of the ``adapter_config.json`` beside it."""
    from safetensors import safe_open

    try:
        with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as fh:
            mark = (fh.metadata() or {}).get(_MARK)
        text = (folder / CONFIG_NAME).read_bytes()
    except Exception:  # missing, unreadable or not safetensors: not provably ours
        return False
    return mark == hashlib.sha256(text).hexdigest()


def _check_replaceable(folder: Path, overwrite: bool) -> None:
    """Refuse to replace adapter files loralab did not write, unless ``overwrite``."""
    present = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if (folder / n).exists()]
    if present and not overwrite and not _written_by_loralab(folder):
        raise LoralabError(f"{str(folder / present[0])!r} exists and loralab did not write it "
                           "(or it changed since); a user's file is never replaced: save into "
                           "another folder, or pass overwrite=True")


def _write(folder: Path, blob: bytes, text: str) -> None:
    if folder.exists():
        check_output_dir(folder)
        atomic_write(folder / WEIGHTS_NAME, lambda fh: fh.write(blob))
        atomic_write_text(folder / CONFIG_NAME, text)
    else:
        with atomic_dir(folder) as tmp:
            (tmp / WEIGHTS_NAME).write_bytes(blob)
            (tmp / CONFIG_NAME).write_text(text, encoding="utf-8")


def _files(model: nn.Module, a: str, save_embedding_layers: SaveEmbeddings = "auto"
           ) -> tuple[bytes, str]:
    stored = injected_config(model, a)
    tensors, saved = adapter_state(model, stored.bias if stored is not None else "none", a)
    config = config_for(model, saved, a)
    if config.base_model_name_or_path is None:
        name = getattr(model, "name_or_path", None)
        config = replace(config, base_model_name_or_path=name or None)
    for key, t in tensors.items():         # a NaN factor is never written without a word
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise LoralabError(f"adapter {a!r}: {key!r} holds {int((~torch.isfinite(t)).sum())} "
                               "NaN/Inf values (training diverged?); refusing to save a broken "
                               "adapter")
    tensors.update(embedding_tensors(model, config, save_embedding_layers, a))
    text = json.dumps(config_to_peft(config), indent=2, sort_keys=True) + "\n"
    mark = hashlib.sha256(text.encode("utf-8")).hexdigest()
    blob = st_save(tensors, metadata={"format": "pt", _MARK: mark})
    return blob, text


def save_adapter(model: nn.Module, folder: str | os.PathLike[str],
                 adapter_name: str | None = None, *,
                 save_embedding_layers: SaveEmbeddings = "auto",
                 overwrite: bool = False) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``folder``.

    ``adapter_name``: that adapter's files go into ``folder``; ``None``: every adapter, in
    PEFT's layout (``"default"`` in ``folder``, others in ``folder/<name>/``).
    ``save_embedding_layers``: PEFT's option, whether the full input/output embedding weights
    go into the file too (``"auto"``: when an embedding layer is targeted or the vocabulary
    was resized; see :mod:`loralab.lora.full_weights`). The files are
    PEFT's: ``peft.PeftModel.from_pretrained(base, folder)`` rebuilds the same model. A new
    folder appears whole or not at all; in an existing folder each file is replaced
    atomically and other files are kept; an existing ``adapter_config.json`` or
    ``adapter_model.safetensors`` that loralab did not write (the safetensors header records
    the SHA-256 of the config saved with it) is replaced only with ``overwrite=True``. Every
    adapter is checked before any is written. Returns the folder.
    """
    layers = lora_layers(model)
    if not layers:
        raise LoralabError("the model has no LoRA layers to save; call inject_lora first")
    if "" in layers:
        raise LoralabError("the model itself is a LoRA layer; save a module that contains it")
    present = list(dict.fromkeys(a for m in layers.values() for a in m.adapter_names))
    if adapter_name is not None and adapter_name not in present:
        raise LoralabError(f"adapter {adapter_name!r} is not allowed; the model's adapters "
                           f"are: {', '.join(present)}")
    dest = Path(folder)
    names = [adapter_name] if adapter_name is not None else present
    where = {a: dest if adapter_name is not None or a == "default" else dest / a
             for a in names}
    files = {a: _files(model, a, save_embedding_layers) for a in names}   # checks first
    for a in names:
        _check_replaceable(where[a], overwrite)
    for a in names:
        _write(where[a], *files[a])
    return dest
