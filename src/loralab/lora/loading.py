"""``load_adapter``: a PEFT-format adapter folder into a model, all checks first.

Every check (config fields, key set, shapes against the layers the model *has* or will get,
dtypes, finite values *in the dtype the layer will hold them in*: a float64 ``1e300`` that
would become ``inf`` in a float32 factor, or a ``1e-300`` that would become ``0``, is refused;
an update ``s·B A`` beyond the layer's range) runs before the model is touched, so a failed
load leaves it exactly as it was. ``adapter_model.bin`` (a pickle) is never read.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from torch import nn

from ..errors import LoralabError
from ..fileio.tensors import checked_cast, dtype_name
from .adapters import CONFIG_NAME, WEIGHTS_NAME
from .config import AdapterConfig, as_adapter_config, config_from_peft
from .destinations import Where, check_updates, destination, target_dtype
from .full_weights import check_vocab, embedding_slots
from .inject import inject_lora, kind_refusal, mark_only_lora_trainable, set_module
from .keys import PARTS, Part, is_embedding, lora_key, peft_layer_path, peft_param_key
from .layer import LoRALayer, base_module
from .param import LoRAParameter
from .param_targets import ParamTarget, find_param_targets, param_shapes
from .qlora import is_quantized
from .saved import TrainedCopy
from .state import lora_layers, remember_config
from .storage import features
from .targets import find_targets, lora_kind, saved_module_paths
from .tied import input_path, tie_names, tie_saved, tied_heads
from .tokens import plan_tokens, token_key, token_wrappers

__all__ = ["expected_keys", "load_adapter", "read_adapter"]



def read_adapter(folder: str | os.PathLike[str]) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    """The config and tensors of an adapter folder (checked: JSON, safetensors, no pickle)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoralabError(f"adapter folder {str(folder)!r} does not exist")
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not cfg_path.exists():
        raise LoralabError(f"adapter folder {str(folder)!r} has no {CONFIG_NAME}")
    for path in (cfg_path, w_path):
        if path.exists() and not path.is_file():
            raise LoralabError(f"{str(path)!r} is not a regular file (a folder, FIFO or "
                               "device); only regular files are read")
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


def _new_shapes(mod: nn.Module, r: int, lora_bias: bool, use_dora: bool
                ) -> dict[Part, tuple[int, ...]]:
    """Shapes of the factors a LoRA adapter of rank ``r`` on ``mod`` will have."""
    mod = base_module(mod)
    out: dict[Part, tuple[int, ...]]
    magnitude: tuple[int, ...]
    if isinstance(mod, nn.MultiheadAttention):      # in_proj_weight (3E, E)
        return {"A": (r, mod.embed_dim), "B": (3 * mod.embed_dim, r)}
    if lora_kind(mod) == "conv":
        w = mod.weight
        ones = (1,) * (w.ndim - 2)
        out = {"A": (r, w.shape[1] * mod.groups, *w.shape[2:]),
               "B": (w.shape[0], r // mod.groups, *ones)}
        magnitude = (1, w.shape[0], *ones)            # PEFT's DoRA conv: (1, C_out, 1…)
    else:           # Linear, Conv1D, Embedding: A (r, d_in), B (d_out, r)
        d_out, d_in = features(mod)
        out = {"A": (r, d_in), "B": (d_out, r)}
        magnitude = (d_out,)
    if lora_bias and not is_embedding(mod):
        out["bias"] = (out["B"][0],)
    if use_dora:
        out["magnitude"] = magnitude
    return out


def _layer_shapes(layer: LoRALayer, a: str) -> dict[Part, tuple[int, ...]]:
    fa, fb = layer.factors(a)
    out: dict[Part, tuple[int, ...]] = {"A": tuple(fa.shape), "B": tuple(fb.shape)}
    if layer.lora_bias_param(a) is not None:
        out["bias"] = tuple(layer.lora_bias_param(a).shape)
    if a in layer.lora_magnitude_vector:
        out["magnitude"] = tuple(layer.lora_magnitude_vector[a].shape)
    return out


def _token_shapes(model: nn.Module, config: AdapterConfig, targets: list[str], adapter: str
                  ) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """``(n, d)`` of each trainable-tokens delta the file must hold, and the tied heads
    (-> their embedding's path), whose delta a file may repeat (PEFT's resized vocabulary)."""
    wrappers = token_wrappers(model)
    have = {p: m for p, m in wrappers.items()
            if m.tied_to is None and adapter in m.trainable_tokens_delta}
    if have:
        tied = {p: next(q for q, w in wrappers.items() if w is m.tied_to)
                for p, m in wrappers.items() if m.tied_to is not None}
        return {p: tuple(m.trainable_tokens_delta[adapter].shape) for p, m in have.items()}, tied
    plan = plan_tokens(model, config, targets)
    return ({p: (len(idx), int(model.get_submodule(p).weight.shape[1]))
             for p, idx in plan.wrap.items()}, {h: plan.source or "" for h in plan.tied})


def _head_keys(model: nn.Module, config: AdapterConfig, heads: list[str], adapter: str
               ) -> dict[str, tuple[Where, tuple[int, ...]]]:
    """ensure_weight_tying: a tied head's PEFT keys, the embedding's factors transposed
    (``lora_A: (r, d)``, ``lora_B: (V, r)``); optional, they repeat the embedding's."""
    emb = input_path(model)
    if not heads or emb is None:
        return {}
    layer = model.get_submodule(emb)
    v, d = base_module(layer).weight.shape
    r = layer.r[adapter] if isinstance(layer, LoRALayer) and adapter in layer.r \
        else config.rank_for(emb)
    return {lora_key(h, part): (("tied", f"{h}:{part}"), shape) for h in heads
            for part, shape in (("A", (r, int(d))), ("B", (int(v), r)))}


def _expected(model: nn.Module, config: AdapterConfig, targets: list[str], saved: list[str],
              adapter: str) -> tuple[dict[str, tuple[Where, tuple[int, ...]]], set[str]]:
    """Every key the file may hold (where it goes, its shape), and those it must hold.

    A saved module ``p`` is stored as ``p.<key>``; PEFT's ``bias="all"`` also writes the
    biases of its wrapper's two halves, ``p.modules_to_save.bias`` and
    ``p.original_module.bias``, which are read back where they belong."""
    layers = lora_layers(model)
    out: dict[str, tuple[Where, tuple[int, ...]]] = {}
    required: set[str] = set()
    for name in targets:
        mod = model.get_submodule(name)
        shapes = _layer_shapes(mod, adapter) if isinstance(mod, LoRALayer) and adapter in mod.r \
            else _new_shapes(mod, config.rank_for(name), config.lora_bias, config.use_dora)
        for part in PARTS:
            if part in shapes:
                key = lora_key(peft_layer_path(layers, name), part, is_embedding(mod))
                out[key] = (("factor", f"{name}:{part}"), shapes[part])
                required.add(key)
        if isinstance(mod, nn.MultiheadAttention):   # its out_proj, about to get LoRA too
            e, r = mod.embed_dim, config.rank_for(name)
            for part, shape in (("A", (r, e)), ("B", (e, r))):
                key = lora_key(f"{name}.base_layer.out_proj", part)   # type: ignore[arg-type]
                out[key] = (("factor", f"{name}.base.out_proj:{part}"), shape)
                required.add(key)
    for path in saved:
        mod = model.get_submodule(path)
        inner = mod.module if isinstance(mod, TrainedCopy) else mod
        for key, t in inner.state_dict().items():
            entry = (("param", f"{path}.module.{key}"), tuple(t.shape))
            out[peft_param_key(f"{path}.{key}", ())] = entry
            required.add(peft_param_key(f"{path}.{key}", ()))
            if key.endswith("bias"):
                out[peft_param_key(f"{path}.modules_to_save.{key}", ())] = entry
                out[peft_param_key(f"{path}.original_module.{key}", ())] = (
                    ("param", f"{path}.original_module.{key}"), tuple(t.shape))
    shapes, tied = _token_shapes(model, config, targets, adapter)
    for path, shape in shapes.items():
        out[token_key(path)] = (("tokens", path), shape)
        required.add(token_key(path))
    for head, source in tied.items():          # optional: the embedding's delta again
        out[token_key(head)] = (("tokens", source), shapes[source])
    wrapped = set(layers) | set(targets)
    for key, (pname, shape) in embedding_slots(model, wrapped).items():
        out.setdefault(key, (("param", pname), shape))   # save_embedding_layers: optional
    for pname, p in model.named_parameters():
        if not pname.endswith("bias") or any(pname.startswith(f"{s}.") for s in saved):
            continue
        out.setdefault(peft_param_key(pname, wrapped), (("param", pname), tuple(p.shape)))
    return out, required


def _param_expected(model: nn.Module, config: AdapterConfig, params: list[ParamTarget],
                    adapter: str, expected: dict[str, tuple[Where, tuple[int, ...]]],
                    required: set[str]) -> None:
    """Add the keys of the ``target_parameters`` layers (PEFT's paths) to ``expected``."""
    layers = lora_layers(model)
    for t in params:
        layer = layers.get(t.path)
        shapes = _layer_shapes(layer, adapter) if layer is not None and adapter in layer.r \
            else param_shapes(model, t, config.rank_for(t.key))
        for part, shape in shapes.items():
            key = lora_key(t.peft_path, part)      # type: ignore[arg-type]
            expected[key] = (("factor", f"{t.path}:{part}"), shape)
            required.add(key)


def _check_kinds(model: nn.Module, config: AdapterConfig, targets: list[str], adapter: str
                 ) -> None:
    """The file's settings on each layer, named before any shape is compared: a merged
    layer, DoRA or lora_bias unlike the model's adapter, DoRA or a rank on a layer type
    that cannot take it."""
    layers = lora_layers(model)
    for name in targets:
        layer = layers.get(name)
        if layer is not None and layer.merged:
            raise LoralabError(f"LoRA layer {name!r} is merged; unmerge_lora(model) before "
                               "loading an adapter into it")
        if layer is not None and adapter in layer.r and (
                layer.use_dora[adapter], layer.lora_bias[adapter]) != (config.use_dora,
                                                                       config.lora_bias):
            raise LoralabError(f"the adapter config has use_dora={config.use_dora}, "
                               f"lora_bias={config.lora_bias} but the model's adapter "
                               f"{adapter!r} on {name!r} has use_dora="
                               f"{layer.use_dora[adapter]}, lora_bias={layer.lora_bias[adapter]}")
        mod = base_module(model.get_submodule(name))
        if (why := kind_refusal(mod, config.rank_for(name), config.use_dora)) is not None:
            raise LoralabError(f"module {name!r}: {why}")


def _targets(model: nn.Module, config: AdapterConfig, adapter: str
             ) -> tuple[list[str], list[str], list[str], list[ParamTarget]]:
    """The LoRA module paths the adapter fills (those having it, or those the config
    selects), the saved modules' paths, the tied heads and the ``target_parameters``."""
    layers = lora_layers(model)
    saved, shared = tie_saved(model, config, saved_module_paths(model, config, list(layers)))
    had = any(adapter in m.r for m in layers.values())
    having = sorted(n for n, m in layers.items()
                    if adapter in m.r and not isinstance(m, LoRAParameter))
    found = [] if had or config.target_modules == [] else find_targets(
        model, config, skip=[*layers, *saved, *shared], allow_lora=True)
    targets, heads = (having, list(tied_heads(model))) if had else tie_names(model, config,
                                                                              found)
    params = find_param_targets(model, config.target_parameters) \
        if config.target_parameters else []
    return targets, [*saved, *shared], heads, params


def expected_keys(model: nn.Module, config: AdapterConfig | Any, adapter: str = "default"
                  ) -> tuple[list[str], list[str], dict[str, tuple[int, ...]], set[str]]:
    """What an adapter file with ``config`` must hold to load into ``model`` (which is not
    changed): ``(targets, saved, {key: shape}, required)``: the LoRA module paths, the saved
    modules' paths, every key the file may hold with the shape the model wants, and the keys
    it must hold. Raises :class:`LoralabError` when the config selects no module."""
    config = as_adapter_config(config)
    targets, saved, heads, params = _targets(model, config, adapter)
    expected, required = _expected(model, config, targets, saved, adapter)
    _param_expected(model, config, params, adapter, expected, required)
    expected.update(_head_keys(model, config, heads, adapter))
    return targets, saved, {k: shape for k, (_, shape) in expected.items()}, required


def _plan(model: nn.Module, config: AdapterConfig, tensors: dict[str, torch.Tensor],
          adapter: str) -> tuple[list[str], list[str], dict[str, tuple[Where, torch.Tensor]],
                                 list[ParamTarget]]:
    """Check everything; return the LoRA paths, the saved modules and {key: (where, t)}."""
    layers = lora_layers(model)
    targets, saved, heads, params = _targets(model, config, adapter)
    _check_kinds(model, config, targets, adapter)
    check_vocab(tensors, embedding_slots(model, set(layers) | set(targets)))
    expected, required = _expected(model, config, targets, saved, adapter)
    _param_expected(model, config, params, adapter, expected, required)
    expected.update(_head_keys(model, config, heads, adapter))
    plan: dict[str, tuple[Where, torch.Tensor]] = {}
    for key, t in sorted(tensors.items()):
        if key not in expected:
            raise LoralabError(f"adapter key {key!r} matches no LoRA layer, bias or saved "
                               f"module of the model (LoRA layers: {', '.join(targets)})")
        where, shape = expected[key]
        if tuple(t.shape) != shape:
            raise LoralabError(f"adapter key {key!r} has shape {tuple(t.shape)} but the model "
                               f"expects {shape}")
        if not t.is_floating_point():
            raise LoralabError(f"adapter key {key!r} has dtype {t.dtype}; expected a float")
        dtype = target_dtype(model, where, saved, adapter)   # what the layer will hold
        t = checked_cast(t, dtype, f"adapter key {key!r}",
                         f"the model holds it as {dtype_name(dtype)}; refusing to load a "
                         "broken adapter")
        plan[key] = (where, t)
    for name in targets:   # the file's config and its own tensors must agree on each rank
        a_key = next(k for k, (w, _) in expected.items() if w == ("factor", f"{name}:A"))
        r = config.rank_for(name)
        if a_key in plan and plan[a_key][1].shape[0] != r:
            shape = (r, *plan[a_key][1].shape[1:])
            raise LoralabError(f"adapter key {a_key!r} has shape "
                               f"{tuple(plan[a_key][1].shape)} but the config's r={r} for "
                               f"{name!r} expects {shape}")
    check_updates(model, config, targets, expected, plan)
    missing = sorted(k for k in required if k not in plan)
    if missing:
        raise LoralabError(f"adapter has no key {missing[0]!r} (expected shape "
                           f"{expected[missing[0]][1]}); {len(missing)} key(s) missing in all")
    return targets, saved, plan, params


def _init_config(model: nn.Module, config: AdapterConfig, targets: list[str]) -> AdapterConfig:
    """The config to inject with: a LoftQ/PiSSA/OLoRA adapter onto a quantized base (the
    base it was made for) takes the file's tensors as they are, without re-running the init."""
    quantized = any(is_quantized(base_module(model.get_submodule(n))) for n in targets)
    if quantized and config.init.splits_base:
        return replace(config, init_lora_weights=True, loftq_config={})
    return config


def load_adapter(model: nn.Module, folder: str | os.PathLike[str],
                 config: AdapterConfig | Any | None = None,
                 adapter_name: str = "default") -> list[str]:
    """Load a PEFT-format adapter folder into ``model`` as ``adapter_name``; returns the LoRA
    module paths.

    When the model has no adapter of that name, it is injected from the saved config (PEFT's
    matching rules; or from ``config``, an :class:`AdapterConfig`, ``peft.LoraConfig`` or
    dict, when given) beside any adapters the model has; when it has one, its layers are
    filled, with each layer's α, rsLoRA and dropout set from the config. For PEFT's
    multi-adapter folders load ``folder`` and then ``folder/<name>`` as ``name``. Any
    mismatch raises :class:`LoralabError` before anything changes.
    """
    file_config, tensors = read_adapter(folder)
    config = as_adapter_config(config) if config is not None else file_config
    targets, saved, plan, params = _plan(model, config, tensors, adapter_name)
    had_lora = any(adapter_name in m.r for m in lora_layers(model).values())
    if not had_lora:  # the init is overwritten below; keep the caller's RNG streams as they were
        cuda = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
        with torch.random.fork_rng(devices=cuda):  # "pissa" redoes the SVD split, as PEFT does
            inject_lora(model, _init_config(model, config, targets), adapter_name=adapter_name)
    for path in saved:
        if not isinstance(model.get_submodule(path), TrainedCopy):
            set_module(model, path, TrainedCopy(model.get_submodule(path)))
    with torch.no_grad():
        for where, t in plan.values():          # t is already in the destination's dtype
            dest = destination(model, where, saved, adapter_name)
            dest.copy_(t.to(device=dest.device, dtype=dest.dtype))
        for tok in token_wrappers(model).values():   # the rows as loaded (a full table too)
            tok.refresh_original(adapter_name)
        for name in targets:
            layer = model.get_submodule(name)
            layer.set_scale(adapter_name, config.alpha_for(name), config.use_rslora)
            layer.set_dropout(adapter_name, config.lora_dropout)
        for t in params:
            model.get_submodule(t.path).set_scale(adapter_name, config.alpha_for(t.key),
                                                  config.use_rslora)
    if had_lora:
        mark_only_lora_trainable(model, bias=config.bias)
    remember_config(model, config, adapter_name)
    return targets + [t.path for t in params]
