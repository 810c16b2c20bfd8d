"""Adapters that carry full weights: PEFT's ``save_embedding_layers``.

A vocabulary grown by new tokens (``model.resize_token_embeddings(V')``) gives the model
rows no base checkpoint holds, so an adapter trained on it is useless without them. PEFT
therefore saves the whole embedding (and output head) *into the adapter file* when it
cannot rule out a resized vocabulary, under the module's own keys::

    base_model.model.<emb>.base_layer.weight     (V', d)   the embedding is a LoRA target
    base_model.model.<emb>.weight                (V', d)   it is not (input and output
                                                           embeddings, each)

``save_embedding_layers`` (PEFT's values): ``True`` saves them, ``False`` never, ``"auto"``
(the default) saves them when ``target_modules`` names an embedding layer (``embed_tokens``
or ``lm_head``: :data:`EMBEDDING_LAYER_NAMES`; a regex: matched against the modules so
named) and ``trainable_token_indices`` is unset, or when the model's ``config.vocab_size``
differs from the one in ``<base_model_name_or_path>/config.json`` (a local folder; PEFT
also asks the Hub, loralab never goes online). Which modules: the model's
``get_input_embeddings()`` and ``get_output_embeddings()`` (a transformers model); when an
embedding layer is targeted, only those wrapped in LoRA (PEFT's rule). A model without
these getters (a plain ``nn.Module``) saves none under ``"auto"`` and refuses ``True``.

On load the weights go into the base modules (the model keeps them after ``unload``, as
with PEFT); a model whose vocabulary has another size is refused with the size to resize to.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..errors import LoralabError
from .config import AdapterConfig
from .keys import PREFIX
from .layer import LoRALayer
from .tied import TiedLoRAHead
from .tokens import TrainableTokens, token_key

__all__ = ["EMBEDDING_LAYER_NAMES", "SaveEmbeddings", "check_vocab", "embedding_is_targeted",
           "embedding_slots", "embedding_tensors", "holder", "vocab_resized"]

EMBEDDING_LAYER_NAMES = ("embed_tokens", "lm_head")
SaveEmbeddings = bool | Literal["auto"]


def embedding_is_targeted(model: nn.Module, config: AdapterConfig) -> bool:
    """PEFT's test: a list ``target_modules`` holds ``"embed_tokens"`` or ``"lm_head"``; a
    regex matches a module whose name ends in one of them."""
    spec = config.target_modules
    if isinstance(spec, str) and spec != "all-linear":
        return any(re.fullmatch(spec, n) for n, _ in model.named_modules()
                   if any(re.match(rf"(.*\.)?{e}$", n) for e in EMBEDDING_LAYER_NAMES))
    return isinstance(spec, list) and any(e in spec for e in EMBEDDING_LAYER_NAMES)


def _vocab(config: dict) -> int | None:
    for cfg in (config, config.get("text_config") or {}):
        if isinstance(cfg, dict) and isinstance(cfg.get("vocab_size"), int):
            return int(cfg["vocab_size"])
    return None


def vocab_resized(model: nn.Module, config: AdapterConfig) -> bool:
    """Whether ``model.config.vocab_size`` differs from the base's (read from the local
    ``<base_model_name_or_path>/config.json``; False when there is none)."""
    now = getattr(getattr(model, "config", None), "vocab_size", None)
    source = config.base_model_name_or_path or getattr(model, "name_or_path", None)
    path = Path(source) / "config.json" if source else None
    if not isinstance(now, int) or path is None or not path.is_file():
        return False
    try:
        base = _vocab(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False
    return base is not None and base != now


def _embeddings(model: nn.Module) -> list[nn.Module]:
    """The input and output embeddings (transformers' getters; none that raises)."""
    out = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        fn = getattr(model, getter, None)
        try:
            mod = fn() if callable(fn) else None
        except (NotImplementedError, AttributeError):
            mod = None
        if isinstance(mod, nn.Module) and all(mod is not m for m in out):
            out.append(mod)
    return out


def _path_of(model: nn.Module, module: nn.Module) -> str | None:
    return next((n for n, m in model.named_modules() if m is module), None)


def embedding_slots(model: nn.Module, wrapped: set[str]
                    ) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The keys a file may carry full embedding weights under -> (the parameter's path in
    ``model``, its shape); ``wrapped``: LoRA layers' paths (and those about to be made)."""
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for mod in _embeddings(model):
        path = _path_of(model, mod)
        if path is None:
            continue
        for leaf, t in holder(mod).named_parameters(recurse=False):
            for inner in ("base_layer.", "", "token_adapter.base_layer."):   # LoRA, plain, tokens
                out[f"{PREFIX}{path}.{inner}{leaf}"] = (f"{path}.{leaf}", tuple(t.shape))
    return out


def holder(mod: nn.Module) -> nn.Module:
    """The module holding the weight: a LoRA layer's, a tied head's or a trainable-tokens
    wrapper's base, or ``mod`` itself."""
    return mod.base if isinstance(mod, LoRALayer | TiedLoRAHead | TrainableTokens) else mod


def check_vocab(tensors: dict[str, torch.Tensor],
                slots: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Refuse a file whose full embedding weights have another vocabulary size, naming the
    size to resize the model to (before any other shape is compared)."""
    for key, (path, shape) in slots.items():
        t = tensors.get(key)
        if t is not None and tuple(t.shape) != shape and t.ndim == len(shape) == 2:
            raise LoralabError(f"adapter key {key!r} holds a vocabulary of {t.shape[0]} "
                               f"tokens but the model's {path!r} has {shape[0]}; resize the "
                               f"model first (model.resize_token_embeddings({t.shape[0]})), "
                               "as the adapter was trained after adding tokens")


def embedding_tensors(model: nn.Module, config: AdapterConfig, choice: SaveEmbeddings,
                      adapter: str = "default") -> dict[str, torch.Tensor]:
    """The full embedding weights to save with adapter ``adapter``, under PEFT's keys (see
    the module doc for ``choice``, PEFT's ``save_embedding_layers``); a trainable-tokens
    wrapper's under ``token_adapter.base_layer``, a tied one's delta repeated (PEFT's)."""
    if choice not in (True, False, "auto"):
        raise LoralabError(f"save_embedding_layers={choice!r} is not allowed; use True, False "
                           "or 'auto'")
    targeted = embedding_is_targeted(model, config)
    asked = choice is True
    if choice == "auto":
        tokens = getattr(config, "trainable_token_indices", None) is not None
        choice = (targeted and not tokens) or vocab_resized(model, config)
    if not choice:
        return {}
    if not _embeddings(model):          # "auto" on a plain nn.Module: nothing to find (PEFT)
        if asked:
            raise LoralabError("save_embedding_layers=True needs a model with "
                               "get_input_embeddings() (a transformers model); this one has "
                               "none")
        return {}
    out: dict[str, torch.Tensor] = {}
    for mod in _embeddings(model):
        path = _path_of(model, mod)
        wrapped = isinstance(mod, LoRALayer | TiedLoRAHead)
        is_lora = wrapped and isinstance(mod.base, nn.Linear | nn.Embedding)
        if path is None or (targeted and not is_lora):
            continue
        tokens = isinstance(mod, TrainableTokens)
        inner = "token_adapter.base_layer." if tokens else "base_layer." if wrapped else ""
        for leaf, t in holder(mod).named_parameters(recurse=False):
            out[f"{PREFIX}{path}.{inner}{leaf}"] = t.detach().to("cpu").clone()
        if tokens and mod.tied_to is not None and adapter in mod.deltas():
            out[token_key(path)] = mod.deltas()[adapter].detach().to("cpu").clone()
    return out
