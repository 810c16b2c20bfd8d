"""Where each key of an adapter file goes in a model, the dtype it will be held in there,
and whether its update fits that dtype: what :func:`~loralab.lora.loading.load_adapter` checks
before it writes anything.

A value is checked in the dtype it will be used in (:func:`target_dtype`, then
:func:`loralab.fileio.tensors.checked_cast`), and an adapter's update ``ΔW = s·B A`` is
bounded entry-wise by ``s·‖B‖_F·‖A‖_F`` (:func:`check_updates`), so a finite file never
loads as ``inf`` or ``0``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import LoralabError
from ..fileio.tensors import dtype_name
from .config import AdapterConfig
from .full_weights import holder
from .layer import LoRALayer, adapter_dtype, base_module
from .qlora import is_quantized
from .saved import TrainedCopy

__all__ = ["Where", "check_updates", "destination", "target_dtype"]

Where = tuple[str, str]          # ("factor", "<layer path>:<A|B|bias>") or ("param", path)


def destination(model: nn.Module, where: Where, saved: list[str], adapter: str
                 ) -> torch.Tensor:
    kind, spec = where
    if kind == "factor":
        name, part = spec.rsplit(":", 1)
        layer = model.get_submodule(name)
        if part == "magnitude":
            return layer.lora_magnitude_vector[adapter]
        a, b = layer.factors(adapter)
        return {"A": a, "B": b}.get(part) if part != "bias" else layer.lora_bias_param(adapter)
    if kind == "tied":                 # a view of the embedding's factor: writes it
        head, part = spec.rsplit(":", 1)
        return model.get_submodule(head).factors(adapter)[part == "B"]
    if kind == "tokens":
        return model.get_submodule(spec).trainable_tokens_delta[adapter]
    path, _, key = spec.partition(".module.")
    if path in saved and key:
        return model.get_submodule(path).module.state_dict(keep_vars=True)[key]
    owner, _, leaf = spec.rpartition(".")
    return getattr(holder(model.get_submodule(owner)), leaf)


def _fallback_dtype(model: nn.Module, spec: str) -> torch.dtype:
    """The factor dtype of the nearest existing module on ``spec``'s path (a value whose
    layer is not injected yet: a tied head, trainable tokens, a bare parameter)."""
    path = spec.split(":")[0]
    while path:
        try:
            mod = model.get_submodule(path)
            break
        except AttributeError:
            path = path.rpartition(".")[0]
    else:
        mod = model
    w = next((p for p in base_module(mod).parameters() if p.is_floating_point()), None)
    return adapter_dtype(w.dtype) if w is not None else torch.float32


def target_dtype(model: nn.Module, where: Where, saved: list[str], adapter: str
                 ) -> torch.dtype:
    """The dtype the value at ``where`` will be held in: the existing parameter's, or for an
    adapter about to be injected its factor dtype (float32 over a float16/bfloat16 or
    quantized base, as :func:`~loralab.lora.layer.adapter_dtype`)."""
    try:
        return _target_dtype(model, where, saved, adapter)
    except (AttributeError, KeyError, TypeError, IndexError, LoralabError):
        return _fallback_dtype(model, where[1])


def _target_dtype(model: nn.Module, where: Where, saved: list[str], adapter: str
                  ) -> torch.dtype:
    kind, spec = where
    if kind == "factor":
        name = spec.rsplit(":", 1)[0]
        mod = model.get_submodule(name)
        if not (isinstance(mod, LoRALayer) and adapter in mod.r):
            base = base_module(mod)
            return torch.float32 if is_quantized(base) else adapter_dtype(base.weight.dtype)
        return destination(model, where, saved, adapter).dtype
    for marker in (".module.", ".original_module."):    # a saved module, maybe not yet
        path, _, key = spec.partition(marker)            # wrapped in a TrainedCopy
        if path in saved and key:
            mod = model.get_submodule(path)
            inner = mod.module if isinstance(mod, TrainedCopy) else mod
            return inner.state_dict()[key].dtype
    return destination(model, where, saved, adapter).dtype


def check_updates(model: nn.Module, config: AdapterConfig, targets: list[str],
                   expected: dict[str, tuple[Where, tuple[int, ...]]],
                   plan: dict[str, tuple[Where, torch.Tensor]]) -> None:
    """Refuse an adapter whose update ``s·B A`` could leave the layer's dtype: every entry
    of ``ΔW`` is at most ``s·‖B‖_F·‖A‖_F`` (Cauchy–Schwarz), computed in float64."""
    keys = {w: k for k, (w, _) in expected.items()}
    for name in targets:
        a, b = (plan.get(keys.get(("factor", f"{name}:{p}"), ""), (None, None))[1]
                for p in ("A", "B"))
        if a is None or b is None:
            continue
        r = config.rank_for(name)
        scale = config.alpha_for(name) / (r ** 0.5 if config.use_rslora else r)
        bound = scale * float(b.double().norm()) * float(a.double().norm())
        w = getattr(base_module(model.get_submodule(name)), "weight", None)
        if not isinstance(w, torch.Tensor):
            continue
        dtype = w.dtype if w.is_floating_point() else torch.float32
        if not bound <= torch.finfo(dtype).max / 2:
            raise LoralabError(f"adapter of {name!r}: its update s·B A (s = {scale:.3g}) can "
                               f"reach {bound:.3g}, beyond the {dtype_name(dtype)} range of the "
                               "layer; the outputs would be inf/NaN, so it is refused")
