"""``ensure_weight_tying``: a head tied to the input embedding follows the embedding's adapter.

Many language models tie ``lm_head.weight`` to the input table ``E: (V, d)``: one tensor,
``logits = h Eᵀ``. An adapter that changes the table should change the head the same way,
or the two drift apart (and a merge would write one update into the shared tensor twice).
With ``ensure_weight_tying=True`` PEFT (and loralab) keeps them tied:

* **LoRA** on the embedding (``target_modules`` names ``embed_tokens`` or ``lm_head``): the
  embedding gets the adapter, and the head a :class:`TiedLoRAHead` reading the embedding's
  factors, ``A_head = B_embᵀ: (r, d)``, ``B_head = A_embᵀ: (V, r)``, so
  ``ΔW_head = s·A_embᵀ B_embᵀ = ΔEᵀᵀ = ΔE``: the head sees the same table ``E + ΔE``. Merging
  writes ``ΔE`` once into the shared tensor, which serves both (PEFT's merge writes it twice).
* **modules_to_save** naming the embedding: the head's trained copy shares the embedding
  copy's weight.

On disk the head's keys are PEFT's (``lm_head.lora_A.weight`` = ``B_embᵀ``, ...), so either
library loads the other's file.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import LoralabError
from .config import AdapterConfig
from .embedding import LoRAEmbedding
from .saved import TrainedCopy

__all__ = ["TiedLoRAHead", "attach_heads", "input_embeddings", "input_path", "share_copy",
           "tie_names",
           "tie_saved", "tied_heads"]

_EMBEDDING_NAMES = ("embed_tokens", "lm_head")


class TiedLoRAHead(nn.Module):
    """A head ``base`` (``nn.Linear``, weight tied to the embedding's table) plus the tied
    embedding's LoRA: ``y = base(x) + s·(x B_emb) A_emb`` ((..., d) @ (d, r) @ (r, V))."""

    def __init__(self, base: nn.Linear, source: LoRAEmbedding) -> None:
        super().__init__()
        self.base = base
        self._source = [source]                      # a list: not a submodule
        for p in base.parameters():
            p.requires_grad_(False)

    @property
    def source(self) -> LoRAEmbedding:
        return self._source[0]

    def factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """PEFT's ``(lora_A, lora_B)`` of the head: ``(B_embᵀ: (r, d), A_embᵀ: (V, r))``."""
        a, b = self.source.factors(name)
        return b.t(), a.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d) -> (..., V)."""
        y = self.base(x)
        src = self.source
        if src.disabled or src.merged:
            return y
        for name in src.active_adapters:
            a, b = src.factors(name)
            xl = x if x.dtype == a.dtype else x.to(a.dtype)
            y = y + ((xl @ b) @ a).to(y.dtype) * src.scaling[name]   # (..., r) @ (r, V)
        return y


def _tied_to(model: nn.Module, source: str) -> list[str]:
    if not getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        return []
    w = model.get_submodule(source).weight
    out: list[str] = []
    for n, m in model.named_modules():
        if not n or n == source or n.startswith(f"{source}.") or any(
                n.startswith(f"{h}.") for h in out):
            continue                                   # a wrapper's own base is not a head
        head = m.base if isinstance(m, TiedLoRAHead) else m
        if isinstance(head, nn.Linear) and head.weight is w:
            out.append(n)
    return out


def input_embeddings(model: nn.Module) -> nn.Module | None:
    """``model.get_input_embeddings()``, or None (no such method, or it raises
    ``NotImplementedError`` as transformers' base class does)."""
    fn = getattr(model, "get_input_embeddings", None)
    try:
        emb = fn() if callable(fn) else None
    except (NotImplementedError, AttributeError):
        return None
    return emb if isinstance(emb, nn.Module) else None


def input_path(model: nn.Module) -> str | None:
    """The path of the model's input embedding, or None."""
    emb = input_embeddings(model)
    return next((n for n, m in model.named_modules() if m is emb), None) if emb else None


def tie_names(model: nn.Module, config: AdapterConfig, names: list[str]
              ) -> tuple[list[str], list[str]]:
    """PEFT's ``_add_targets_to_tie``: with ``ensure_weight_tying`` and an embedding layer
    among ``names``, the input embedding is a target and its tied heads are not (they are
    returned second, to get a :class:`TiedLoRAHead`)."""
    emb = input_path(model)
    if not config.ensure_weight_tying or emb is None or not isinstance(
            model.get_submodule(emb), nn.Embedding):
        return names, []
    tied = _tied_to(model, emb)
    if not tied or not any(re.search(rf"(^|\.)({'|'.join(_EMBEDDING_NAMES)})$", n)
                           for n in names):
        return names, []
    if config.use_dora:
        raise LoralabError("ensure_weight_tying=True with use_dora=True on a tied embedding is "
                           "not supported: the embedding's and the head's DoRA norms differ")
    kept = [n for n in names if n not in tied]
    return (kept if emb in kept else [*kept, emb]), tied


def tie_saved(model: nn.Module, config: AdapterConfig, saved: list[str]
              ) -> tuple[list[str], list[str]]:
    """PEFT's ``_add_modules_to_save_to_tie``: with ``ensure_weight_tying`` and the input
    embedding saved, its tied heads are no saved modules of their own; returns (the saved
    paths without them, the heads), the heads to share the embedding copy's weight."""
    emb = input_path(model)
    if not config.ensure_weight_tying or emb is None or emb not in saved:
        return saved, []
    heads = _tied_to(model, emb)
    return [s for s in saved if s not in heads], heads


def share_copy(model: nn.Module, emb: str, head: str) -> TrainedCopy:
    """A trained copy of ``head`` whose weight is the embedding copy's."""
    copy = TrainedCopy(model.get_submodule(head))
    src = model.get_submodule(emb)
    if isinstance(src, TrainedCopy):
        copy.module.weight = src.module.weight
    return copy


def attach_heads(model: nn.Module, emb: str | None, heads: list[str], shared: list[str]
                 ) -> None:
    """Each head tied to embedding ``emb`` follows its LoRA (:class:`TiedLoRAHead`) or shares
    its trained copy's weight (``modules_to_save``); ``model`` already has the adapter."""
    if emb is None:
        return
    source = model.get_submodule(emb)
    for name, done in [*((h, TiedLoRAHead) for h in heads), *((h, TrainedCopy) for h in shared)]:
        mod = model.get_submodule(name)
        if isinstance(mod, done):
            continue
        new = TiedLoRAHead(mod, source) if done is TiedLoRAHead else share_copy(model, emb, name)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)


def tied_heads(model: nn.Module) -> dict[str, TiedLoRAHead]:
    """Every tied head by path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, TiedLoRAHead)}
