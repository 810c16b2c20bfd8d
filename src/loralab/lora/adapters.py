"""Adapters on disk in Hugging Face PEFT's format: ``adapter_config.json`` + safetensors.

A folder written by :func:`save_adapter` loads with ``peft.PeftModel.from_pretrained(base,
folder)`` and gives the same outputs; :func:`load_adapter` reads folders PEFT saved (rsLoRA
included). Tensors are named as PEFT names them::

    base_model.model.<module path>.lora_A.weight        (r, d_in)
    base_model.model.<module path>.lora_B.weight        (d_out, r)
    base_model.model.<module path>.base_layer.bias      (d_out,)  only with bias="all"/"lora_only"
    base_model.model.<other module>.bias                          only with bias="all"

No pickle anywhere: ``adapter_model.bin`` files are refused. Every check (config fields,
key set, shapes, dtypes) runs before the model is touched, so a failed load leaves it as it
was. PiSSA adapters are stored as PEFT stores them (``init_lora_weights="pissa"`` plus the
trained A, B); loading one into a plain model redoes the SVD split of the base first.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ..errors import LoralabError
from ..fileio import atomic_dir, atomic_write, atomic_write_text, check_output_dir
from .config import AdapterConfig, match_target
from .inject import (
    find_targets,
    inject_lora,
    injected_config,
    lora_layers,
    mark_only_lora_trainable,
    remember_config,
)
from .layer import LoRALinear

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "config_from_peft", "config_to_peft", "load_adapter",
           "save_adapter"]

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."
_INIT_TO_PEFT: dict[str, Any] = {"default": True, "gaussian": "gaussian", "pissa": "pissa"}
# Fields of PEFT's LoraConfig that describe the run, not the math: ignored on load.
_IGNORED = {"base_model_name_or_path", "revision", "task_type", "inference_mode", "auto_mapping",
            "peft_version", "megatron_config", "megatron_core", "loftq_config",
            "qalora_group_size", "ensure_weight_tying", "corda_config", "eva_config",
            "lora_ga_config"}
_HONOURED = {"peft_type", "r", "lora_alpha", "target_modules", "exclude_modules",
             "lora_dropout", "use_rslora", "init_lora_weights", "bias"}


def config_to_peft(config: AdapterConfig) -> dict[str, Any]:
    """The ``adapter_config.json`` dict (PEFT ``LoraConfig`` fields) for ``config``."""
    return {
        "peft_type": "LORA",
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "target_modules": config.target_modules,
        "exclude_modules": config.exclude_modules,
        "lora_dropout": config.lora_dropout,
        "use_rslora": config.use_rslora,
        "init_lora_weights": _INIT_TO_PEFT[config.init],
        "bias": config.bias,
        "fan_in_fan_out": False, "use_dora": False, "lora_bias": False, "modules_to_save": None,
        "rank_pattern": {}, "alpha_pattern": {}, "layers_to_transform": None,
        "layers_pattern": None, "task_type": None, "inference_mode": True,
        "base_model_name_or_path": None, "revision": None,
    }


def config_from_peft(data: dict[str, Any], source: str = CONFIG_NAME) -> AdapterConfig:
    """Build an :class:`AdapterConfig` from a PEFT ``adapter_config.json`` dict.

    Refuses (naming the field) anything that would change the math and that loralab does
    not implement: DoRA, ``fan_in_fan_out`` (GPT-2's Conv1D), ``rank_pattern`` and
    ``alpha_pattern``, ``modules_to_save``, ``layers_to_transform``, other inits, ...
    """
    if not isinstance(data, dict):
        raise LoralabError(f"{source}: expected a JSON object, got {type(data).__name__}")
    if data.get("peft_type") != "LORA":
        raise LoralabError(f"{source}: peft_type={data.get('peft_type')!r} is not allowed; "
                           "only 'LORA' adapters can be loaded")
    for key, value in data.items():
        if key not in _HONOURED and key not in _IGNORED and value not in (None, False, {}, [],
                                                                           ""):
            raise LoralabError(f"{source}: {key}={value!r} is not supported by loralab; "
                               "only plain LoRA on nn.Linear layers can be loaded")
    init_map = {True: "default", False: "default", "gaussian": "gaussian", "pissa": "pissa"}
    init = data.get("init_lora_weights", True)
    if isinstance(init, bool | str) and init in init_map:
        init_kind = init_map[init]
    else:
        raise LoralabError(f"{source}: init_lora_weights={init!r} is not supported; "
                           "allowed: true, false, 'gaussian', 'pissa'")
    try:
        return AdapterConfig(r=data.get("r", 8), lora_alpha=data.get("lora_alpha", 8),
                             target_modules=data.get("target_modules"),
                             exclude_modules=data.get("exclude_modules"),
                             lora_dropout=data.get("lora_dropout", 0.0),
                             use_rslora=data.get("use_rslora", False), init=init_kind,
                             bias=data.get("bias", "none"))
    except LoralabError as exc:
        raise LoralabError(f"{source}: {exc}") from None


def _peft_name(param_path: str, lora_names: set[str]) -> str:
    """Our parameter path -> PEFT's (``<m>.base.bias`` -> ``<m>.base_layer.bias``)."""
    module, _, leaf = param_path.rpartition(".")
    if module.endswith(".base") and module[: -len(".base")] in lora_names:
        module = module[: -len(".base")] + ".base_layer"
    elif module == "base" and "" in lora_names:
        module = "base_layer"
    return PREFIX + (f"{module}.{leaf}" if module else leaf)


def _adapter_tensors(model: nn.Module, bias: str) -> dict[str, torch.Tensor]:
    layers = lora_layers(model)
    out: dict[str, torch.Tensor] = {}
    for name, mod in layers.items():
        out[f"{PREFIX}{name}.lora_A.weight"] = mod.lora_A.weight
        out[f"{PREFIX}{name}.lora_B.weight"] = mod.lora_B.weight
    if bias != "none":
        wrapped = {id(m.base.bias) for m in layers.values() if m.base.bias is not None}
        for pname, p in model.named_parameters():
            if pname.endswith("bias") and (bias == "all" or id(p) in wrapped):
                out[_peft_name(pname, set(layers))] = p
    return {k: v.detach().to("cpu").contiguous() for k, v in out.items()}


def _config_for(model: nn.Module, layers: dict[str, LoRALinear]) -> AdapterConfig:
    first = next(iter(layers.values()))
    for name, m in layers.items():
        ours = (m.r, m.lora_alpha, m.use_rslora, m.lora_dropout_p, m.init)
        if ours != (first.r, first.lora_alpha, first.use_rslora, first.lora_dropout_p,
                    first.init):
            raise LoralabError(f"LoRA layer {name!r} has (r, lora_alpha, use_rslora, dropout, "
                               f"init) = {ours}, unlike the others; one adapter file holds one "
                               "setting (PEFT's rank_pattern is not supported)")
    stored = injected_config(model)
    names = sorted(layers)
    targets: list[str] | str = names
    exclude = None
    if stored is not None:  # keep the user's target_modules if they select exactly these
        probe = AdapterConfig(target_modules=stored.target_modules,
                              exclude_modules=stored.exclude_modules)
        hit = sorted(n for n, _ in model.named_modules()
                     if n and not any(n.startswith(f"{w}.") for w in names)
                     and match_target(probe, n))
        if hit == names:
            targets, exclude = stored.target_modules, stored.exclude_modules
    return AdapterConfig(r=first.r, lora_alpha=first.lora_alpha, target_modules=targets,
                         exclude_modules=exclude, lora_dropout=first.lora_dropout_p,
                         use_rslora=first.use_rslora, init=first.init,  # type: ignore[arg-type]
                         bias=stored.bias if stored is not None else "none")


def save_adapter(model: nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``folder``.

    The files are PEFT's: ``peft.PeftModel.from_pretrained(base, folder)`` rebuilds the same
    model. ``target_modules`` is the injected config's when it selects exactly the wrapped
    layers, else their full paths. A new folder appears whole or not at all; in an existing
    folder each file is replaced atomically and other files are kept. Returns the folder.
    """
    layers = lora_layers(model)
    if not layers:
        raise LoralabError("the model has no LoRA layers to save; call inject_lora first")
    if "" in layers:
        raise LoralabError("the model itself is a LoRALinear; save a module that contains it")
    config = _config_for(model, layers)
    blob = st_save(_adapter_tensors(model, config.bias), metadata={"format": "pt"})
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


def _read(folder: Path) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    if not folder.is_dir():
        raise LoralabError(f"adapter folder {str(folder)!r} does not exist")
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.is_file():
        raise LoralabError(f"adapter folder {str(folder)!r} has no {CONFIG_NAME}")
    if not w_path.is_file():
        extra = " (adapter_model.bin is a pickle and is never loaded; re-save it as " \
                "safetensors)" if (folder / "adapter_model.bin").exists() else ""
        raise LoralabError(f"adapter folder {str(folder)!r} has no {WEIGHTS_NAME}{extra}")
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LoralabError(f"{str(cfg_path)!r} is not valid JSON: {exc}") from None
    config = config_from_peft(data, str(cfg_path))
    try:
        tensors = st_load(w_path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types
        raise LoralabError(f"{str(w_path)!r} is not a readable safetensors file: "
                           f"{exc}") from None
    return config, tensors


def _plan(model: nn.Module, config: AdapterConfig, tensors: dict[str, torch.Tensor]
          ) -> tuple[list[str], dict[str, tuple[Any, torch.Tensor]]]:
    """Check everything; return the target paths and {key: (where, tensor)} to copy."""
    layers = lora_layers(model)
    targets = sorted(layers) if layers else find_targets(model, config)
    modules = {n: (layers[n] if layers else model.get_submodule(n)) for n in targets}
    for name, m in modules.items():
        if isinstance(m, LoRALinear) and m.merged:
            raise LoralabError(f"LoRA layer {name!r} is merged; unmerge_lora(model) before "
                               "loading an adapter into it")
    expected: dict[str, tuple[Any, tuple[int, ...]]] = {}
    for name, m in modules.items():
        d_out, d_in = m.weight.shape
        expected[f"{PREFIX}{name}.lora_A.weight"] = ((name, "A"), (config.r, d_in))
        expected[f"{PREFIX}{name}.lora_B.weight"] = ((name, "B"), (d_out, config.r))
    params = dict(model.named_parameters())
    bias_targets = {_peft_name(p, set(layers) or set()): p for p in params if p.endswith("bias")}
    for name, m in modules.items():  # biases of layers that will be wrapped
        if not layers and m.bias is not None:
            bias_targets[f"{PREFIX}{name}.base_layer.bias"] = f"{name}.bias"
            bias_targets.pop(f"{PREFIX}{name}.bias", None)
    plan: dict[str, tuple[Any, torch.Tensor]] = {}
    for key, t in sorted(tensors.items()):
        if key in expected:
            where, shape = expected[key]
        elif key in bias_targets:
            where = ("param", bias_targets[key])
            shape = tuple(params[bias_targets[key]].shape)
        else:
            raise LoralabError(f"adapter key {key!r} matches no LoRA layer or bias of the "
                               f"model (LoRA layers: {', '.join(targets)})")
        if tuple(t.shape) != tuple(shape):
            raise LoralabError(f"adapter key {key!r} has shape {tuple(t.shape)} but the model "
                               f"expects {tuple(shape)}")
        if not t.is_floating_point():
            raise LoralabError(f"adapter key {key!r} has dtype {t.dtype}; expected a float")
        plan[key] = (where, t)
    missing = [k for k in expected if k not in plan]
    if missing:
        where, shape = expected[missing[0]]
        raise LoralabError(f"adapter has no key {missing[0]!r} (expected shape {shape}); "
                           f"{len(missing)} key(s) missing in all")
    return targets, plan


def load_adapter(model: nn.Module, folder: str | os.PathLike[str]) -> list[str]:
    """Load a PEFT-format adapter into ``model``; returns the LoRA module paths.

    A plain model gets LoRA injected from the saved config (PEFT's matching rules); a model
    that already has LoRA layers has them filled, and their ``lora_alpha``, ``use_rslora``
    and dropout set from the file. Any mismatch (missing or unexpected key, shape, merged
    layer, unsupported config field) raises :class:`LoralabError` before anything changes.
    """
    config, tensors = _read(Path(folder))
    targets, plan = _plan(model, config, tensors)
    had_lora = bool(lora_layers(model))
    if not had_lora:  # the init is overwritten below; keep the caller's RNG streams as they were
        cuda = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
        with torch.random.fork_rng(devices=cuda):
            inject_lora(model, config)  # "pissa" redoes the SVD split of each base, as PEFT does
    layers = lora_layers(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for where, t in plan.values():
            if where[0] == "param":
                path = where[1]
                if not had_lora and path.rpartition(".")[0] in layers:
                    path = path.rpartition(".")[0] + ".base.bias"
                dest = params[path]
            else:
                dest = getattr(layers[where[0]], f"lora_{where[1]}").weight
            dest.copy_(t.to(device=dest.device, dtype=dest.dtype))
        for name in targets:
            m = layers[name]
            m.lora_alpha, m.use_rslora = config.lora_alpha, config.use_rslora
            m.scaling = config.lora_alpha / (math.sqrt(m.r) if m.use_rslora else m.r)
            m.lora_dropout_p = float(config.lora_dropout)
            m.lora_dropout = nn.Dropout(m.lora_dropout_p) if m.lora_dropout_p > 0 \
                else nn.Identity()
    if had_lora:
        mark_only_lora_trainable(model, bias=config.bias)
    remember_config(model, config)
    return targets
