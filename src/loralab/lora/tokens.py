"""Trainable tokens: only the listed rows of an embedding train (PEFT's
``trainable_token_indices``, its ``TrainableTokensLayer``), and the tied output head follows.

New tokens added to a vocabulary (``resize_token_embeddings``) start as random rows that no
low-rank update of the table can fix cheaply; training the whole ``(V, d)`` table to fix
``n`` rows costs ``V/n`` times too much. PEFT keeps, per adapter, a trainable copy of just
those rows, ``delta: (n, d)`` (initialised to the rows themselves), and computes with::

    E' = E0 with rows idx replaced by delta            (index_copy: replace, not add)
    y  = E'[x]                       (the embedding)   y = x E'ᵀ (+ b)   (a tied lm_head)

Replacing (not adding) makes the result independent of how the new rows were initialised.
Merge writes ``delta`` into the rows; unmerge writes the original rows back.

Which module: a list of indices goes to the model's input embedding (``embed_tokens`` when
there is no ``get_input_embeddings``); a dict ``{name: indices}`` names modules (a path
ending in ``name``). With ``config.tie_word_embeddings`` the modules whose weight *is* the
embedding's (a tied ``lm_head``) get a wrapper *tied* to the embedding's: the same ``delta``,
nothing of their own on disk. Two tied layers with different indices are refused under
``ensure_weight_tying=True`` (PEFT's error); without it they get separate deltas, which
cannot both be merged into the one shared weight (loralab refuses that merge; PEFT's merge
then differs from its own unmerged output). File key (one per non-tied wrapper)::

    base_model.model.<path>.token_adapter.trainable_tokens_delta     (n, d)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LoralabError
from .config import AdapterConfig
from .keys import PREFIX
from .tied import input_path

__all__ = ["TOKEN_SUFFIX", "TokenPlan", "TrainableTokens", "check_token_merge", "plan_tokens",
           "token_key", "token_wrappers", "wrap_tokens"]

TOKEN_SUFFIX = "token_adapter.trainable_tokens_delta"


class TrainableTokens(nn.Module):
    """``base`` (an ``nn.Embedding``, or a tied ``nn.Linear`` head) whose rows
    ``token_indices[name]`` are replaced by the trainable ``trainable_tokens_delta[name]``.

    ``tied_to``: the embedding's wrapper, whose indices and deltas this one uses."""

    def __init__(self, base: nn.Module, adapter_name: str, token_indices: list[int],
                 tied_to: TrainableTokens | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Embedding | nn.Linear):
            raise LoralabError(f"trainable_token_indices needs an nn.Embedding (or a tied "
                               f"nn.Linear head), got {type(base).__name__}")
        self.base = base
        self._tied = [tied_to] if tied_to is not None else []   # a list: not a submodule
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disabled = False
        if tied_to is None:
            self.trainable_tokens_delta = nn.ParameterDict()
            self.token_indices: dict[str, list[int]] = {}
            self.trainable_tokens_original: dict[str, torch.Tensor] = {}
        base.weight.requires_grad_(False)
        self.add_adapter(adapter_name, token_indices)

    @property
    def tied_to(self) -> TrainableTokens | None:
        return self._tied[0] if self._tied else None

    def _source(self) -> TrainableTokens:
        return self.tied_to or self

    def deltas(self) -> nn.ParameterDict:
        """The ``(n, d)`` rows per adapter (the tied embedding's, when tied)."""
        return self._source().trainable_tokens_delta

    def indices(self, name: str) -> list[int]:
        return self._source().token_indices[name]

    @torch.no_grad()
    def add_adapter(self, name: str, token_indices: list[int]) -> None:
        """Adapter ``name`` on rows ``token_indices`` (delta = the rows as they are)."""
        if not self.active_adapters:
            self.active_adapters = [name]
        if self.tied_to is not None:
            return
        w = self.base.weight
        rows = w[torch.tensor(token_indices, device=w.device)].detach().clone()
        self.token_indices[name] = list(token_indices)
        self.trainable_tokens_delta[name] = nn.Parameter(rows.clone())
        self.trainable_tokens_original[name] = rows

    @torch.no_grad()
    def refresh_original(self, name: str) -> None:
        """Take adapter ``name``'s original rows from the base weight as it is now (after a
        load wrote a full table into it); unmerged only."""
        if self.tied_to is None and name in self.token_indices and not self.merged_adapters:
            idx = torch.tensor(self.token_indices[name], device=self.base.weight.device)
            self.trainable_tokens_original[name] = self.base.weight[idx].detach().clone()

    @torch.no_grad()
    def delete_adapter(self, name: str) -> None:
        """Forget adapter ``name`` (its original rows written back first if merged)."""
        if name in self.merged_adapters:
            self.unmerge()
        if self.tied_to is None and name in self.trainable_tokens_delta:
            del self.trainable_tokens_delta[name]
            self.token_indices.pop(name)
            self.trainable_tokens_original.pop(name)
        self.active_adapters = [a for a in self.active_adapters if a != name]

    @property
    def weight(self) -> torch.Tensor:
        """The table the wrapper computes with (the active adapters' rows in), as PEFT's
        wrapper exposes it to code that reads ``embed_tokens.weight``."""
        return self.weight_with([n for n in self.active_adapters if n in self.deltas()]
                                if not (self.disabled or self.merged_adapters) else [])

    def weight_with(self, names: list[str]) -> torch.Tensor:
        """``W0`` (the stored ``(V, d)`` table) with adapters ``names``' rows replaced."""
        w = self.base.weight
        for name in names:
            idx = torch.tensor(self.indices(name), device=w.device)
            w = w.index_copy(0, idx, self.deltas()[name].to(w))
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ids (...) -> (..., d) for an embedding; (..., d) -> (..., V) for a tied head."""
        names = [n for n in self.active_adapters if n in self.deltas()]
        if self.disabled or self.merged_adapters or not names:
            return self.base(x)
        w, base = self.weight_with(names), self.base
        if isinstance(base, nn.Embedding):
            return F.embedding(x, w, base.padding_idx, base.max_norm, base.norm_type,
                               base.scale_grad_by_freq, base.sparse)
        return F.linear(x, w, base.bias)

    def trainable(self) -> list[torch.Tensor]:
        """The deltas of the active adapters (none of its own when tied)."""
        if self.tied_to is not None:
            return []
        return [self.trainable_tokens_delta[n] for n in self.active_adapters
                if n in self.trainable_tokens_delta]

    @torch.no_grad()
    def merge(self) -> None:
        """Write the active adapters' rows into the base weight (idempotent)."""
        names = [n for n in self.active_adapters if n in self.deltas()
                 and n not in self.merged_adapters]
        for name in names:
            delta = self.deltas()[name]
            if not bool(torch.isfinite(delta).all()):
                raise LoralabError(f"trainable tokens of adapter {name!r} have NaN/Inf "
                                   "entries; refusing to merge them")
        if names:
            self.base.weight.copy_(self.weight_with(names))
        self.merged_adapters += names

    @torch.no_grad()
    def unmerge(self) -> None:
        """Write the original rows back (a tied head: the embedding's unmerge does it)."""
        w = self.base.weight
        for name in reversed(self.merged_adapters):
            if self.tied_to is None:
                idx = torch.tensor(self.token_indices[name], device=w.device)
                w.index_copy_(0, idx, self.trainable_tokens_original[name].to(w))
        self.merged_adapters = []

    def extra_repr(self) -> str:
        n = {a: len(self.indices(a)) for a in self.deltas()}
        return f"tokens={n}, tied={self.tied_to is not None}, active={self.active_adapters}"


@dataclass
class TokenPlan:
    """Which modules get trainable tokens: ``wrap`` {path: indices}, and ``tied`` the paths of
    the heads tied to the input embedding ``source``."""

    wrap: dict[str, list[int]] = field(default_factory=dict)
    tied: list[str] = field(default_factory=list)
    source: str | None = None


def _tied_heads(model: nn.Module, source: str) -> list[str]:
    """Modules (other than ``source``) whose weight is the embedding's, when the model's
    config ties them (``tie_word_embeddings``)."""
    if not getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        return []
    w = _weight(model.get_submodule(source))
    out: list[str] = []
    for n, m in model.named_modules(remove_duplicate=False):
        if n and n != source and not any(n.startswith(f"{p}.") for p in [source, *out]) \
                and _weight(m) is w:
            out.append(n)                              # a wrapper's own base is not a head
    return out


def _weight(module: nn.Module) -> torch.Tensor | None:
    mod = module.base if isinstance(module, TrainableTokens) else module
    w = getattr(mod, "weight", None) if isinstance(mod, nn.Embedding | nn.Linear) else None
    return w


def _resolve(model: nn.Module, spec: dict[str, list[int]] | list[int]) -> dict[str, list[int]]:
    if isinstance(spec, list):
        path = input_path(model) or next((n for n, _ in model.named_modules()
                                           if n.endswith("embed_tokens")), None)
        spec = {path or "embed_tokens": spec}
    out: dict[str, list[int]] = {}
    for key, idx in spec.items():
        hits = [n for n, _ in model.named_modules() if n and n.endswith(key)]
        if not hits:
            raise LoralabError(f"trainable_token_indices names module {key!r}, which the "
                               "model does not have")
        out.update({h: list(idx) for h in hits})
    return out


def plan_tokens(model: nn.Module, config: AdapterConfig, lora_paths: list[str]) -> TokenPlan:
    """The wrappers ``config.trainable_token_indices`` asks for, checked (PEFT's rules,
    module doc); ``model`` is not changed."""
    spec = config.trainable_token_indices
    if spec is None:
        return TokenPlan()
    wrap = _resolve(model, spec)
    saved = config.saved_modules()
    source = input_path(model)
    for path, idx in wrap.items():
        mod = model.get_submodule(path)
        if any(path.endswith(s) for s in saved):
            raise LoralabError(f"module {path!r} is both in modules_to_save and in "
                               "trainable_token_indices; give it to one of them (as PEFT)")
        if path in lora_paths:
            raise LoralabError(f"module {path!r} gets LoRA and trainable_token_indices; "
                               "loralab supports one of them per module")
        w = _weight(mod)
        if w is None:
            raise LoralabError(f"trainable_token_indices on {path!r}, a {type(mod).__name__}; "
                               "it needs an nn.Embedding (or a tied nn.Linear head)")
        bad = [i for i in idx if not 0 <= i < w.shape[0]]
        if bad:
            raise LoralabError(f"trainable_token_indices {bad[0]} for {path!r} is out of range; "
                               f"the module has {w.shape[0]} tokens (resize it first)")
    tied = _tied_heads(model, source) if source in wrap else []
    clash = [p for p in tied if p in wrap and wrap[p] != wrap[source]]
    if clash and config.ensure_weight_tying:
        raise LoralabError(f"cannot ensure weight tying when tied layers get different token "
                           f"indices ({source}: {wrap[source]}, {clash[0]}: {wrap[clash[0]]});"
                           " give them the same indices or set ensure_weight_tying=False")
    if config.ensure_weight_tying and not getattr(getattr(model, "config", None),
                                                  "tie_word_embeddings", False):
        warnings.warn("ensure_weight_tying=True but the model does not tie its weights "
                      "(tie_word_embeddings=False); nothing is tied", UserWarning, stacklevel=3)
    if clash:
        return TokenPlan(wrap, [], source)
    return TokenPlan({p: i for p, i in wrap.items() if p not in tied}, tied, source)


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def wrap_tokens(model: nn.Module, plan: TokenPlan, adapter_name: str) -> None:
    """Put the planned wrappers in (or the adapter into existing ones)."""
    for path, idx in plan.wrap.items():
        mod = model.get_submodule(path)
        if isinstance(mod, TrainableTokens):
            mod.add_adapter(adapter_name, idx)
        else:
            _set(model, path, TrainableTokens(mod, adapter_name, idx))
    if plan.source is None:
        return
    src = model.get_submodule(plan.source)
    for path in plan.tied:
        mod = model.get_submodule(path)
        if not isinstance(mod, TrainableTokens):
            _set(model, path, TrainableTokens(mod, adapter_name, [], tied_to=src))


def token_wrappers(model: nn.Module) -> dict[str, TrainableTokens]:
    """Every trainable-tokens wrapper by path."""
    return {n: m for n, m in model.named_modules() if isinstance(m, TrainableTokens)}


def token_key(path: str) -> str:
    """PEFT's key of the wrapper at ``path``."""
    return f"{PREFIX}{path}.{TOKEN_SUFFIX}"


def check_token_merge(model: nn.Module) -> None:
    """Refuse merging two untied wrappers that share one weight (PEFT merges them wrongly)."""
    seen: dict[int, str] = {}
    for path, mod in token_wrappers(model).items():
        if mod.tied_to is not None:
            continue
        other = seen.setdefault(id(mod.base.weight), path)
        if other != path:
            raise LoralabError(f"the trainable tokens of {path!r} and {other!r} have "
                               "different indices on one shared (tied) weight; merging both "
                               "is not defined, so keep the model unmerged")
