"""PEFT's tensor names, in one place: (module path, part, adapter) ↔ PEFT's key.

In memory PEFT and loralab hold adapter ``name``'s factors per layer in dicts keyed by the
adapter (``<path>.lora_A.<name>.weight``); on disk (``adapter_model.safetensors``) the adapter
name is dropped (each adapter has its own file) and every key gets :data:`PREFIX`::

    part         Linear / Conv1D / conv               nn.Embedding
    "A"          <path>.lora_A.weight     (r, d_in)   <path>.lora_embedding_A   (r, V)
    "B"          <path>.lora_B.weight     (d_out, r)  <path>.lora_embedding_B   (d, r)
    "bias"       <path>.lora_B.bias       (d_out,)    (none)
    "magnitude"  <path>.lora_magnitude_vector         DoRA, (d_out,)
    base bias    <path>.base_layer.bias               bias="all" / "lora_only"

:func:`lora_key` goes one way, :func:`parse_lora_key` the other, :func:`adapter_tensors`
gives one adapter's tensors of a layer under their keys (the save, the load and
:func:`~loralab.lora.lora_state_dict` all use it), :func:`peft_param_key` names any other
parameter (a wrapped layer's bias lives in ``base_layer``), :func:`peft_layer_path` the path
of a LoRA layer nested in another (PEFT's ``base_layer`` where loralab says ``base``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

import torch
from torch import nn

from .layer import LoRALayer, base_module

__all__ = ["PARTS", "PREFIX", "Part", "adapter_tensors", "is_embedding", "lora_key",
           "memory_name", "parse_lora_key", "peft_layer_path", "peft_param_key"]

PREFIX = "base_model.model."
Part = Literal["A", "B", "bias", "magnitude"]
PARTS: tuple[Part, ...] = ("A", "B", "bias", "magnitude")
_SUFFIX: dict[tuple[Part, bool], str] = {
    ("A", False): "lora_A.weight", ("B", False): "lora_B.weight",
    ("A", True): "lora_embedding_A", ("B", True): "lora_embedding_B",
    ("bias", False): "lora_B.bias",
    ("magnitude", False): "lora_magnitude_vector", ("magnitude", True): "lora_magnitude_vector",
}
_PART = {suffix: key for key, suffix in _SUFFIX.items() if key[0] != "magnitude"} | {
    "lora_magnitude_vector": ("magnitude", False)}


def is_embedding(module: nn.Module) -> bool:
    """Whether ``module`` (a LoRA layer or the plain module it wraps or will wrap) is an
    embedding, whose factors PEFT names ``lora_embedding_A`` / ``_B``."""
    return isinstance(base_module(module), nn.Embedding)


def lora_key(path: str, part: Part, embedding: bool = False, prefix: str = PREFIX) -> str:
    """PEFT's key of ``part`` of the LoRA layer at ``path``: ``prefix + path + "." +
    suffix`` (table above; ``path=""``: the model itself is the layer)."""
    suffix = _SUFFIX.get((part, embedding))
    if suffix is None:
        raise KeyError(f"an embedding has no LoRA part {part!r}")
    return f"{prefix}{path}.{suffix}" if path else f"{prefix}{suffix}"


def parse_lora_key(key: str, prefix: str = PREFIX) -> tuple[str, Part, bool] | None:
    """``(path, part, embedding)`` of a LoRA key (the inverse of :func:`lora_key`), or
    ``None`` for a key that is no adapter factor (a bias, a saved module's tensor)."""
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    for suffix, (part, embedding) in _PART.items():
        if rest == suffix:
            return "", part, embedding
        if rest.endswith(f".{suffix}"):
            return rest[: -len(suffix) - 1], part, embedding
    return None


def memory_name(part: Part, adapter: str, embedding: bool = False) -> str:
    """The in-memory parameter name of ``part`` of adapter ``adapter`` inside a LoRA layer
    (PEFT's and loralab's): ``lora_A.<adapter>.weight``, ``lora_embedding_A.<adapter>``, ..."""
    suffix = _SUFFIX[(part, embedding)]
    holder, dot, leaf = suffix.partition(".")
    return f"{holder}.{adapter}.{leaf}" if dot else f"{holder}.{adapter}"


def adapter_parts(layer: LoRALayer, adapter: str) -> dict[Part, torch.Tensor]:
    """Adapter ``adapter``'s tensors of ``layer`` by part (bias and magnitude when present)."""
    a, b = layer.factors(adapter)
    out: dict[Part, torch.Tensor] = {"A": a, "B": b}
    bias = layer.lora_bias_param(adapter)
    if bias is not None:
        out["bias"] = bias
    if adapter in layer.lora_magnitude_vector:
        out["magnitude"] = layer.lora_magnitude_vector[adapter]
    return out


def adapter_tensors(path: str, layer: LoRALayer, adapter: str, prefix: str = PREFIX
                    ) -> dict[str, torch.Tensor]:
    """Adapter ``adapter``'s tensors of the layer at ``path`` under their PEFT keys (only that
    adapter's: selected by the layer's own per-adapter dicts, never by name)."""
    emb = is_embedding(layer)
    return {lora_key(path, part, emb, prefix): t
            for part, t in adapter_parts(layer, adapter).items()}


def peft_param_key(param_path: str, wrapped: Collection[str], prefix: str = PREFIX) -> str:
    """PEFT's key of a model parameter that is no adapter factor (a bias trained with
    ``bias="all"``): a wrapped layer's own parameters live in ``base_layer`` (loralab's
    ``<m>.base.bias``, or ``<m>.bias`` of a module about to be wrapped, -> ``<m>.base_layer.bias``).
    ``wrapped``: the paths of the LoRA layers (and of those about to be made)."""
    module, _, leaf = param_path.rpartition(".")
    if module == "base" and "" in wrapped:
        module = "base_layer"
    elif module.endswith(".base") and module[: -len(".base")] in wrapped:
        module = module[: -len(".base")] + ".base_layer"
    elif module and module in wrapped:
        module = f"{module}.base_layer"
    return prefix + (f"{module}.{leaf}" if module else leaf)


def peft_layer_path(layers: Mapping[str, LoRALayer], path: str) -> str:
    """PEFT's module path of the LoRA layer at loralab's ``path``: where a LoRA layer sits
    inside another one's wrapped module (``<m>.base…``: nested ``target_parameters``
    wrappers, the ``out_proj`` of an ``nn.MultiheadAttention``), PEFT says ``base_layer``:
    ``experts.base`` -> ``experts.base_layer``, ``attn.base.out_proj`` ->
    ``attn.base_layer.out_proj``. ``layers``: every LoRA layer of the model by path."""
    parts = path.split(".")
    for i in range(1, len(parts)):
        if parts[i] == "base" and ".".join(parts[:i]) in layers:
            parts[i] = "base_layer"
    return ".".join(parts)
