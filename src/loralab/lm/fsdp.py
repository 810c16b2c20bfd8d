"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for LoRA fine-tuning under ``torchrun``.

With ``N`` ranks every parameter, frozen or trained, is split along its first dimension into
``N`` shards (a ``DTensor`` with ``Shard(0)`` placement), so each rank holds ``1/N`` of the
weights, of the gradients and of AdamW's two moments. Each transformer block is one FSDP unit
and the root (embeddings, final norm, head) another::

    forward  of a unit:  all-gather its shards -> full weights -> compute -> free the full copy
    backward of a unit:  all-gather again -> gradients -> reduce-scatter (mean over ranks)

so at most about one block's full weights exist at a time beside the shards. A unit may mix
frozen and trainable parameters (a LoRA layer beside its frozen base): only parameters that
received a gradient are reduce-scattered, frozen shards stay bit-identical.

Saving: :func:`full_trainable_state` gathers the trained parameters' full tensors on rank 0,
under the names of the unwrapped model's ``named_parameters()``; rank 0 copies them into an
unsharded copy of the model with :func:`load_trainable_state` and saves that (for LoRA:
``loralab.lora.save_adapter``, PEFT's format). Every function that gathers is collective:
every rank must call it, in the same order.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from ..errors import LoralabError

__all__ = ["find_blocks", "full_trainable_state", "is_sharded", "load_trainable_state",
           "reshard", "shard_model"]


def is_sharded(model: nn.Module) -> bool:
    """True when ``fully_shard`` was applied to ``model`` (its parameters are ``DTensor``s)."""
    return isinstance(model, FSDPModule)


def find_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks: the children of each outermost ``nn.ModuleList``
    whose children all share one class (TinyLM's ``blocks``, Llama's ``model.layers``,
    GPT-2's ``transformer.h``). Empty when the model has no such list."""
    blocks: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside or not isinstance(module, nn.ModuleList) or not len(module):
            continue
        if len({type(child) for child in module}) == 1:
            blocks.extend(module)
            inside.update(id(m) for child in module for m in child.modules())
    return blocks


def _check_shardable(model: nn.Module, param_dtype: torch.dtype | None) -> None:
    """FSDP2 all-gathers one flat buffer per unit: floating parameters, of one dtype unless
    ``param_dtype`` casts them all."""
    dtypes = {p.dtype for p in model.parameters()}
    if any(not dt.is_floating_point for dt in dtypes):
        raise LoralabError("FSDP cannot shard this model: it has integer (quantized) "
                           f"parameters ({sorted(map(str, dtypes))}); train a quantized base "
                           "with DDP or on one device")
    if len(dtypes) > 1 and param_dtype is None:
        raise LoralabError(f"FSDP needs one parameter dtype; the model mixes "
                           f"{', '.join(sorted(map(str, dtypes)))}: cast it to one first")


def shard_model(model: nn.Module, device: torch.device | str, *,
                blocks: list[nn.Module] | None = None, reshard_after_forward: bool = True,
                param_dtype: torch.dtype | None = None) -> nn.Module:
    """Shard ``model`` in place over the default process group; return it (the same object).

    ``model`` is moved to ``device`` first; then each of ``blocks`` (default
    :func:`find_blocks`) becomes one FSDP unit and the root a last one. Parameters are
    replaced by sharded ``DTensor`` parameters, keeping their names and ``requires_grad``,
    so build the optimizer afterwards. ``reshard_after_forward=False`` keeps each block's
    full weights from forward to backward (one all-gather fewer per block, more memory).
    ``param_dtype`` (e.g. ``torch.bfloat16``): compute in that dtype, keep fp32 shards and
    reduce gradients in fp32. Already sharded: resharded (:func:`reshard`) and returned.
    """
    if is_sharded(model):
        reshard(model)
        return model
    if not (tdist.is_available() and tdist.is_initialized()):
        raise LoralabError("FSDP needs a process group: run under torchrun "
                           "(torchrun --nproc_per_node=N ...) or call init_distributed first")
    _check_shardable(model, param_dtype)
    model.to(torch.device(device))
    mp = MixedPrecisionPolicy(param_dtype=param_dtype,
                              reduce_dtype=torch.float32 if param_dtype is not None else None)
    for block in find_blocks(model) if blocks is None else blocks:
        fully_shard(block, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    # The root too is resharded after forward, so that outside a forward/backward (after an
    # evaluation under no_grad too) every parameter is its sharded DTensor.
    fully_shard(model, reshard_after_forward=reshard_after_forward, mp_policy=mp)
    return model


def reshard(model: nn.Module) -> None:
    """Free every gathered full weight of a sharded ``model``, so that each parameter is its
    sharded ``DTensor`` again (needed after a no-grad forward with
    ``reshard_after_forward=False``). Local, no communication."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def _trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def full_trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters' full tensors, on CPU, on rank 0; ``{}`` on other ranks.

    Names are those of the unwrapped model's ``named_parameters()`` (a DDP ``module.`` prefix
    is dropped). Collective under FSDP: every rank must call it. A model that is not sharded
    (one process, DDP) is read directly, without communication.
    """
    rank = tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0
    if not is_sharded(model):
        inner = model.module if isinstance(model, DistributedDataParallel) else model
        if rank != 0:
            return {}
        return {n: p.detach().cpu().clone() for n, p in inner.named_parameters()
                if p.requires_grad}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    reshard(model)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    state = get_model_state_dict(model, options=options)   # gathered on rank 0 only
    names = _trainable_names(model)
    if rank == 0 and sorted(state) != sorted(names):
        raise LoralabError("the gathered state does not match the trainable parameters: "
                           f"got {sorted(state)[:4]}..., expected {sorted(names)[:4]}...")
    return {n: state[n] for n in names} if rank == 0 else {}


@torch.no_grad()
def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (from :func:`full_trainable_state`) into an unsharded ``model``'s
    trainable parameters, in place. The names must be exactly its trainable parameters'
    and every shape must match; otherwise ``LoralabError`` and nothing is changed."""
    if is_sharded(model):
        raise LoralabError("load_trainable_state needs an unsharded model (a copy built "
                           "like the trained one); this one is FSDP-sharded")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or extra:
        raise LoralabError(f"the state does not match the model's trainable parameters: "
                           f"missing {missing[:3]}, unexpected {extra[:3]}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise LoralabError(f"{name}: shape {tuple(tensor.shape)} is not allowed; the "
                               f"model's is {tuple(params[name].shape)}")
    for name, tensor in state.items():
        params[name].copy_(tensor)
