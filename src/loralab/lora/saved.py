"""``TrainedCopy``: a module trained in full beside LoRA (PEFT's ``modules_to_save``).

A classification head, say, is new for the task: LoRA cannot learn it from a low-rank
update of a random matrix, so PEFT trains a full copy of it and saves that copy in the
adapter file (under the module's own path, ``base_model.model.<path>.weight``). The
original stays, frozen, so ``unload`` can still give back the base's own module.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

__all__ = ["TrainedCopy"]


class TrainedCopy(nn.Module):
    """``original_module`` (frozen) and ``module``, its trainable copy, which ``forward`` uses.

    Attributes the rest of the model reads (``weight``, ``out_features``, ...) come from the
    trained copy, so code that looks inside the head keeps working.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.original_module = module
        self.module = copy.deepcopy(module)
        self.disabled = False          # inside disable_adapters: the original answers
        for p in module.parameters():
            p.requires_grad_(False)
        for p in self.module.parameters():
            p.requires_grad_(True)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.disabled:
            return self.original_module(*args, **kwargs)
        return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)
