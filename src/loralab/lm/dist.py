"""Device choice and torch.distributed set-up for ``torchrun``.

Run any loralab training command under ``torchrun --nproc_per_node=N``: torchrun sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` then joins the process
group (``gloo`` on CPU, ``nccl`` on CUDA, one GPU per local rank) and the training loop wraps
the model in ``DistributedDataParallel``. Without torchrun everything is a no-op
(``world_size = 1``). Rank 0 (``is_main``) is the one that writes files.

``strategy="fsdp"`` shards the model instead (FSDP2, :mod:`.fsdp`): call
:meth:`DistContext.shard` *before* building anything that holds its parameters (the optimizer,
parameter groups), since sharding replaces every parameter by a sharded ``DTensor``; the
loop's :meth:`DistContext.wrap` then returns the sharded model as it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import LoralabError, check_choice

__all__ = ["DEVICES", "STRATEGIES", "DistContext", "Device", "Strategy", "init_distributed",
           "resolve_device"]

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
Strategy = Literal["ddp", "fsdp"]
STRATEGIES: tuple[str, ...] = ("ddp", "fsdp")


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when present else CPU; ``cuda`` without a GPU raises ``LoralabError``."""
    check_choice("device", choice, DEVICES)
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise LoralabError("device 'cuda' is not available on this machine (no CUDA GPU "
                           "visible to torch); use --device cpu or auto")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


@dataclass
class DistContext:
    """Where this process stands in the job; the default is a single process.

    ``strategy``: how more than one process trains one model: ``"ddp"`` (every rank holds the
    whole model, gradients are all-reduced) or ``"fsdp"`` (every parameter is sharded over the
    ranks and all-gathered block by block, see :mod:`.fsdp`). With one process both are the
    plain model.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    strategy: Strategy = "ddp"

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        if not 0 <= self.rank < self.world_size:
            raise LoralabError(f"rank={self.rank} is not allowed with world_size="
                               f"{self.world_size}; it must be in [0, world_size)")

    @property
    def sharded(self) -> bool:
        """True when parameters are sharded over ranks (FSDP with more than one process)."""
        return self.strategy == "fsdp" and self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes outputs."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place (no-op for one process)."""
        if self.world_size > 1:
            torch.distributed.all_reduce(tensor)
        return tensor

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.world_size > 1:
            torch.distributed.barrier()

    def broadcast_flag(self, value: bool, device: torch.device | str = "cpu") -> bool:
        """Rank 0's ``value``, on every rank."""
        if self.world_size == 1:
            return value
        t = torch.tensor([1.0 if value else 0.0], device=device)
        torch.distributed.broadcast(t, src=0)
        return bool(t.item())

    def shard(self, model: nn.Module, device: torch.device | str) -> nn.Module:
        """FSDP: move ``model`` to ``device`` and shard it in place (every block, then the root;
        :func:`~loralab.lm.fsdp.shard_model`); otherwise return it untouched. Call it before
        the optimizer is built: sharding replaces the parameters."""
        if not self.sharded:
            return model
        from .fsdp import shard_model

        return shard_model(model, torch.device(device))

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """What the training loop runs: ``model`` for one process or an FSDP-sharded model,
        ``DistributedDataParallel(model)`` for DDP with ``world_size > 1``.

        Raises ``LoralabError`` under FSDP when ``model`` was not sharded by :meth:`shard`."""
        if self.world_size == 1:
            return model
        if self.strategy == "fsdp":
            from .fsdp import is_sharded

            if not is_sharded(model):
                raise LoralabError("strategy 'fsdp' needs the model sharded before training: "
                                   "call dist.shard(model, device) before train()")
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def local_params(self, model: nn.Module) -> list[torch.Tensor]:
        """``model``'s parameters as the tensors this rank holds: the local shard of an
        FSDP ``DTensor`` (whose own storage cannot be read), the parameter itself otherwise."""
        return [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]

    def eval_indices(self, n: int) -> list[int | None]:
        """This rank's share of ``n`` evaluation batches: ``i ≡ rank (mod world_size)``.

        Under FSDP every forward is collective (each block all-gathers its weights), so every
        rank must run as many forwards: the list is padded with ``None`` up to
        ``⌈n / world_size⌉`` (run a forward on any batch, count nothing)."""
        mine: list[int | None] = list(range(self.rank, n, self.world_size))
        if self.sharded:
            mine += [None] * (-(-n // self.world_size) - len(mine))
        return mine


def init_distributed(device_choice: str = "auto", strategy: Strategy = "ddp"
                     ) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group if there is one; return the context and the device.

    Reads ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``. With ``WORLD_SIZE > 1`` the backend is
    ``nccl`` on CUDA and ``gloo`` on CPU. ``strategy`` (``"ddp"`` or ``"fsdp"``) is checked
    and stored in the context.
    """
    check_choice("strategy", strategy, STRATEGIES)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_choice, local)
    if world <= 1:
        return DistContext(strategy=strategy), device
    import torch.distributed as tdist

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend,
                       strategy=strategy), device
