"""QLoRA: LoRA on bitsandbytes' 4-bit (NF4/FP4) and 8-bit bases, as PEFT runs it.

A ``Linear4bit`` / ``Linear8bitLt`` (what transformers loads with ``BitsAndBytesConfig``, or
what :func:`quantize_model` makes of any ``nn.Linear``) stays quantized and frozen; the
LoRA factors live in float32 beside it and the forward is the quantized layer's plus the
LoRA path. Merging does what PEFT's does: dequantize, add ``ΔW``, quantize again, and report
the rounding error that caused. Nothing here imports bitsandbytes until it is needed.

On a CPU with AVX512-BF16, bitsandbytes (0.49+) switches a ``Linear4bit`` that runs a forward
in eval mode without autograd to a repacked weight and a bfloat16 kernel, in place: from then
on the layer computes in bf16 (val losses 1e-3 off the float32 dequantize-then-matmul), and
training backpropagates through that kernel, which has no autograd formula (bitsandbytes'
own "an autograd kernel was not registered" warning). loralab turns that switch off on every
4-bit layer it makes or wraps (:func:`keep_float_compute`), so evaluation and training use one
float32 path on every CPU.

Bytes per parameter of a 4-bit base, measured from the tensors (:func:`base_weight_bytes`):
4 bits of code, plus a float32 absmax per block of 64 (0.5 bit), less with double
quantization (the absmaxes quantized to 8 bit in blocks of 256).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from ..quantizer import bnb, keep_float_compute
from .layer import LoRALayer

__all__ = ["base_weight_bytes", "dequantized_weight", "is_quantized", "keep_float_compute",
           "prepare_model_for_kbit_training", "quantize_model", "requantize"]


def is_quantized(module: nn.Module) -> bool:
    """A bitsandbytes ``Linear4bit`` or ``Linear8bitLt`` (told by type, no import)."""
    return type(module).__module__.startswith("bitsandbytes") and \
        type(module).__name__ in ("Linear4bit", "Linear8bitLt")


def dequantized_weight(module: nn.Module) -> torch.Tensor:
    """The weight a quantized layer stands for, ``(d_out, d_in)`` in float32."""
    w = module.weight
    if type(module).__name__ == "Linear4bit":
        return bnb().functional.dequantize_4bit(w.data, w.quant_state).float()
    scb = _row_scales(module)
    if scb is None:                                  # not quantized yet (has_fp16_weights)
        return w.data.float()
    return w.data.float() * scb.float().view(-1, 1) / 127


def _row_scales(module: nn.Module) -> torch.Tensor | None:
    """An 8-bit layer's per-row absmax: on the weight until the first forward, then moved
    by bitsandbytes to ``module.state``."""
    scb = getattr(module.weight, "SCB", None)
    if scb is None:
        scb = getattr(getattr(module, "state", None), "SCB", None)
    return scb


@torch.no_grad()
def requantize(module: nn.Module, weight: torch.Tensor) -> float:
    """Store ``weight: (d_out, d_in)`` in ``module``'s quantized format; returns the rounding
    error ``max |Q(weight) − weight|``."""
    lib, w = bnb(), module.weight
    device = w.device
    if type(module).__name__ == "Linear4bit":
        st = w.quant_state
        new = lib.nn.Params4bit(weight.detach().float().cpu().contiguous(), requires_grad=False,
                                quant_type=st.quant_type, blocksize=st.blocksize,
                                compress_statistics=st.nested,
                                quant_storage=w.quant_storage).to(device)
    else:
        new = lib.nn.Int8Params(weight.detach().float().cpu().contiguous(), requires_grad=False,
                                has_fp16_weights=False).to(device)
        if getattr(module, "state", None) is not None:   # the old scales must not linger
            module.state.CB = module.state.SCB = None
    module.weight = new
    return float((dequantized_weight(module) - weight.float().to(device)).abs().max())


def _quantized_copy(lin: nn.Linear, bits: int, quant_type: str, double_quant: bool,
                    compute_dtype: torch.dtype) -> nn.Module:
    lib = bnb()
    device = lin.weight.device
    if bits == 4:
        q = lib.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                              compute_dtype=compute_dtype, quant_type=quant_type,
                              compress_statistics=double_quant)
        q.weight = lib.nn.Params4bit(lin.weight.detach().float().cpu(), requires_grad=False,
                                     quant_type=quant_type, compress_statistics=double_quant)
    else:
        q = lib.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                has_fp16_weights=False)
        q.weight = lib.nn.Int8Params(lin.weight.detach().float().cpu(), requires_grad=False,
                                     has_fp16_weights=False)
    if lin.bias is not None:
        q.bias = nn.Parameter(lin.bias.detach().to(compute_dtype).cpu(), requires_grad=False)
    return keep_float_compute(q.to(device))


def quantize_model(model: nn.Module, bits: int = 4, quant_type: str = "nf4",
                   double_quant: bool = False, compute_dtype: torch.dtype = torch.float32,
                   skip: tuple[str, ...] = ("lm_head",)) -> list[str]:
    """Replace every ``nn.Linear`` of ``model`` (not those whose path ends with a name in
    ``skip``, nor tied ones, nor LoRA's own factors) by its bitsandbytes 4- or 8-bit copy, in
    place; returns the paths. For loralab's own tiny LM or any ``nn.Module``, without
    transformers' loader. On a model with LoRA layers (LoftQ's workflow: inject on the float
    model, then quantize) the layers' bases are quantized and the adapters kept."""
    if bits not in (4, 8):
        raise LoralabError(f"bits={bits!r} is not allowed; use 4 or 8")
    if quant_type not in ("nf4", "fp4"):
        raise LoralabError(f"quant_type={quant_type!r} is not allowed; use 'nf4' or 'fp4'")
    bnb()
    owners: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        owners[id(p)] = owners.get(id(p), 0) + 1
    factors = {id(f) for layer in model.modules() if isinstance(layer, LoRALayer)
               for holder in layer.factor_dicts() if isinstance(holder, nn.ModuleDict)
               for f in holder.values()}                   # LoRA's own A and B modules
    names = [n for n, m in model.named_modules() if type(m) is nn.Linear and n
             and not any(n == s or n.endswith(f".{s}") for s in skip)
             and id(m) not in factors and owners.get(id(m.weight), 0) == 1]
    for name in names:
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, _quantized_copy(getattr(holder, child), bits, quant_type,
                                               double_quant, compute_dtype))
    for m in model.modules():              # LoRA layers whose base was just quantized
        if hasattr(m, "quantized") and isinstance(getattr(m, "base", None), nn.Module):
            m.quantized = is_quantized(m.base)
    return names


def _tensor_bytes(obj: Any, seen: set[int]) -> int:
    if isinstance(obj, torch.Tensor):
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        return obj.numel() * obj.element_size()
    total = 0
    for name in ("absmax", "code", "offset", "state2", "SCB"):
        total += _tensor_bytes(getattr(obj, name, None), seen) if hasattr(obj, name) else 0
    return total


def base_weight_bytes(model: nn.Module) -> int:
    """Bytes the model's frozen base weights take, counted from the tensors it holds: the
    packed codes, and for bitsandbytes layers their block scales (``quant_state``) too."""
    seen: set[int] = {id(p) for layer in model.modules() if isinstance(layer, LoRALayer)
                      for p in layer.trainable(layer.adapter_names)}   # the adapters
    total = 0
    for _, p in model.named_parameters():
        if id(p) in seen:                                # the adapter, not the base
            continue
        total += _tensor_bytes(p, seen)
        state = getattr(p, "quant_state", None)
        if state is not None:
            total += _tensor_bytes(state, seen)
        scb = getattr(p, "SCB", None)
        total += _tensor_bytes(scb, seen) if scb is not None else 0
    for m in model.modules():                          # 8-bit scales moved to the state
        state_scb = getattr(getattr(m, "state", None), "SCB", None)
        if isinstance(state_scb, torch.Tensor):
            total += _tensor_bytes(state_scb, seen)
    return total


def prepare_model_for_kbit_training(model: nn.Module, use_gradient_checkpointing: bool = True
                                    ) -> nn.Module:
    """PEFT's ``prepare_model_for_kbit_training``: freeze the base, put its float16/bfloat16
    parameters (norms, embeddings, head) in float32 for stable training, and, for
    gradient checkpointing, make the inputs require grad so the checkpoints have a graph.
    Called after :func:`~loralab.lora.inject_lora`, the active adapters keep training."""
    quantized = any(is_quantized(m) for m in model.modules())
    keep_float_compute(model)
    keep = {id(p) for m in model.modules() if isinstance(m, LoRALayer)   # called after
            for p in m.trainable()}                                      # inject: A, B train
    for p in model.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)
    for p in model.parameters():
        if p.dtype in (torch.float16, torch.bfloat16) and quantized:
            p.data = p.data.float()
    if use_gradient_checkpointing:
        enable = getattr(model, "enable_input_require_grads", None)
        if callable(enable):
            enable()
        gc = getattr(model, "gradient_checkpointing_enable", None)
        if callable(gc):
            gc(gradient_checkpointing_kwargs={"use_reentrant": True})
    return model
