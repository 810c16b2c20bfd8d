"""Mixed adapter batches: each row of a batch through its own adapter (PEFT's ``adapter_names=``).

PEFT serves several adapters from one batch with ``model(x, adapter_names=[...])`` and
``model.generate(..., adapter_names=[...])``: one adapter name per row, ``"__base__"`` for the
base model. loralab does it with a context around any call, forward or ``generate``::

    with mixed_adapter_batch(model, ["fr", "__base__", "de"]):
        out = model.generate(input_ids, max_new_tokens=20)

Inside, every LoRA layer computes ``y = base(x)`` for the whole batch and adds, to the rows
``I_a`` of adapter ``a`` only, that adapter's term ``y[I_a] += s_a · B_a A_a x[I_a]``
(:func:`mixed_rows`); a row of an adapter a layer lacks, or ``"__base__"``, gets ``base(x)``.
A trained copy (``modules_to_save``) answers with the original module on ``"__base__"`` rows.
So row ``i`` equals the model run on row ``i`` alone with its adapter active. Refused, as in
PEFT: training mode, unknown names, merged adapters, DoRA adapters, LoRA on bare
parameters (``target_parameters``) and on ``nn.MultiheadAttention``; and (loralab) with
trainable tokens or a tied LoRA head (``ensure_weight_tying``); a batch of another length is
refused by the first layer.
With beam search pass ``num_beams``: ``generate`` repeats each row that many times, and so
does the list (PEFT's rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from .layer import LoRALayer
from .saved import TrainedCopy

__all__ = ["BASE_ROW", "mixed_adapter_batch", "mixed_rows"]

BASE_ROW = "__base__"


def mixed_rows(layer: LoRALayer, x: torch.Tensor, y: torch.Tensor,
               term: Callable[[str, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``y`` (the base output of the batch ``x``, rows first) with, on the rows of each
    adapter ``a`` in ``layer.row_adapters``, ``term(a, x[rows])`` added."""
    names = layer.row_adapters or []
    if len(names) != x.shape[0]:
        raise LoralabError(f"adapter_names has {len(names)} names but the batch has "
                           f"{x.shape[0]} rows; give one adapter name per row")
    out = y.clone()
    for name in dict.fromkeys(names):
        if name == BASE_ROW or name not in layer.r:
            continue
        rows = torch.tensor([i for i, n in enumerate(names) if n == name], device=x.device)
        out[rows] += term(name, x[rows]).to(out.dtype)
    return out


def _check(model: nn.Module, names: list[str]) -> list[LoRALayer]:
    if model.training:
        raise LoralabError("adapter_names is not allowed in training mode; call model.eval() "
                           "first (as PEFT)")
    layers = [m for m in model.modules() if isinstance(m, LoRALayer)]
    known = {a for m in layers for a in m.r}
    unknown = sorted({n for n in names if n != BASE_ROW} - known)
    if not names or unknown or any(not isinstance(n, str) for n in names):
        raise LoralabError(f"adapter_names={names!r} is not allowed; give one name per row from "
                           f"{sorted(known)} or {BASE_ROW!r}")
    follower = next((type(m).__name__ for m in model.modules()
                     if type(m).__name__ in ("TrainableTokens", "TiedLoRAHead")), None)
    if follower is not None:                 # they act on every row alike
        what = "trainable_token_indices" if follower == "TrainableTokens" else \
            "ensure_weight_tying (a tied LoRA head)"
        raise LoralabError(f"adapter_names is not allowed on a model with {what}; loralab "
                           "serves one adapter per batch there")
    for m in layers:
        if type(m).__name__ in ("LoRAParameter", "LoRAMultiheadAttention"):
            what = "bare parameters (target_parameters)" if type(m).__name__ == \
                "LoRAParameter" else "an nn.MultiheadAttention"
            raise LoralabError(f"adapter_names is not allowed on a model with LoRA on {what}; "
                               "PEFT refuses it too")
        if m.merged:
            raise LoralabError("adapter_names is not allowed while adapters are merged; call "
                               "unmerge_lora(model) first")
        dora = [n for n in names if m.use_dora.get(n, False)]
        if dora:
            raise LoralabError(f"adapter_names is not allowed with DoRA adapter {dora[0]!r} "
                               "(PEFT refuses it too)")
    return layers


def _copy_hook(names: list[str]) -> Callable[..., Any]:
    base = torch.tensor([n == BASE_ROW for n in names])

    def hook(module: TrainedCopy, args: tuple, kwargs: dict, out: Any) -> Any:
        if module.disabled or not bool(base.any()):
            return out
        original = module.original_module(*args, **kwargs)
        if not isinstance(out, torch.Tensor) or out.shape[0] != len(names):
            raise LoralabError("adapter_names with '__base__' rows needs a trained copy "
                               "(modules_to_save) that returns one tensor, rows first")
        pick = base.to(out.device).view(-1, *([1] * (out.dim() - 1)))
        return torch.where(pick, original, out)

    return hook


@contextmanager
def mixed_adapter_batch(model: nn.Module, adapter_names: Sequence[str], num_beams: int = 1
                        ) -> Iterator[nn.Module]:
    """Inside the block, row ``i`` of every batch goes through adapter ``adapter_names[i]``
    (``"__base__"``: the base model); see the module doc. ``num_beams``: repeat each name
    that many times (beam search). Checked before anything changes."""
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise LoralabError(f"num_beams={num_beams!r} is not allowed; give an integer >= 1")
    if isinstance(adapter_names, str):
        raise LoralabError(f"adapter_names={adapter_names!r} is not allowed; give a list with "
                           "one adapter name per row")
    names = [n for n in adapter_names for _ in range(num_beams)]
    layers = _check(model, list(adapter_names))
    copies = [m for m in model.modules() if isinstance(m, TrainedCopy)]
    handles = [c.register_forward_hook(_copy_hook(names), with_kwargs=True) for c in copies]
    for m in layers:
        m.row_adapters = names
    try:
        yield model
    finally:
        for m in layers:
            m.row_adapters = None
        for h in handles:
            h.remove()
