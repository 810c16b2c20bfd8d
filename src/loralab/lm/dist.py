"""Device choice and torch.distributed set-up for ``torchrun``.

Run any loralab training command under ``torchrun --nproc_per_node=N``: torchrun sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed` then joins the process
group (``gloo`` on CPU, ``nccl`` on CUDA, one GPU per local rank) and the training loop wraps
the model in ``DistributedDataParallel``. Without torchrun everything is a no-op
(``world_size = 1``). Rank 0 (``is_main``) is the one that writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import LoralabError, check_choice

__all__ = ["DEVICES", "DistContext", "Device", "init_distributed", "resolve_device"]

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


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
    """Where this process stands in the job; the default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

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

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``DistributedDataParallel(model)`` when ``world_size > 1``, else ``model``."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


def init_distributed(device_choice: str = "auto") -> tuple[DistContext, torch.device]:
    """Join the torchrun process group if there is one; return the context and the device.

    Reads ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``. With ``WORLD_SIZE > 1`` the backend is
    ``nccl`` on CUDA and ``gloo`` on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_choice, local)
    if world <= 1:
        return DistContext(), device
    import torch.distributed as tdist

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend), device
