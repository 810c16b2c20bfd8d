"""What each ``add_weighted_adapter`` combination does to ΔW, measured on a model's adapters.

For adapters ``i`` with weights ``w_i`` the target is the exact weighted sum
``ΔW* = Σ w_i ΔW_i`` of every layer; each combination builds its adapter ``ΔW_c`` (added under
a temporary name and deleted again: the model ends as it began) and is scored by::

    relative distance = √(Σ_layers ‖ΔW_c − ΔW*‖_F²) / √(Σ_layers ‖ΔW*‖_F²)
    zeros             = share of ΔW_c's entries (all layers) that are exactly 0

``cat`` is exact (distance at rounding level); ``linear`` adds cross terms; the SVD forms
drop what lies past their rank; TIES, DARE and magnitude pruning drop entries (on A and B,
or on ΔW for the ``_svd`` forms). :func:`merge_errors` also keeps one layer's ``ΔW*`` and
``ΔW_c`` for a figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .named import delete_adapter
from .state import lora_layers
from .weighted import COMBINATIONS, add_weighted_adapter

__all__ = ["MergeError", "MergeErrors", "merge_errors"]


@dataclass(frozen=True)
class MergeError:
    """One combination: the new adapter's ``rank``, its ``relative`` distance from ``ΔW*``
    and the share of exactly-zero entries of its ``ΔW`` (``zeros``)."""

    combination: str
    rank: int
    relative: float
    zeros: float


@dataclass
class MergeErrors:
    """Every combination's :class:`MergeError`, and one layer's ``ΔW*`` (``exact``) and
    ``ΔW_c`` (``layer_deltas[c]``), each ``(d_out, d_in)`` float32, for ``layer``."""

    adapters: list[str]
    weights: list[float]
    density: float
    rows: list[MergeError]
    layer: str
    exact: torch.Tensor
    layer_deltas: dict[str, torch.Tensor] = field(default_factory=dict)


def _exact(layer: nn.Module, adapters: list[str], weights: list[float]) -> torch.Tensor:
    return sum(w * layer.delta_weight(a) for a, w in zip(adapters, weights, strict=True)
               if a in layer.r)


@torch.no_grad()
def merge_errors(model: nn.Module, adapters: list[str], weights: list[float],
                 combinations: tuple[str, ...] = COMBINATIONS, density: float = 0.5,
                 seed: int = 0, layer: str | None = None) -> MergeErrors:
    """Score each of ``combinations`` of ``adapters`` (equal ranks: every combination applies)
    against ``Σ w_i ΔW_i`` (module doc); the pruning ones keep ``density`` of the entries,
    DARE draws from a generator seeded ``seed``. ``layer``: the layer kept for the figure
    (default: the first holding every adapter)."""
    layers = {p: m for p, m in lora_layers(model).items() if any(a in m.r for a in adapters)}
    keep = layer or next(p for p, m in layers.items() if all(a in m.r for a in adapters))
    exact = {p: _exact(m, adapters, weights) for p, m in layers.items()}
    total = math.sqrt(sum(float((e.double() ** 2).sum()) for e in exact.values()))
    out = MergeErrors(list(adapters), list(weights), density, [], keep,
                      exact[keep].float().clone())
    for c in combinations:
        name = f"_merge_{c}"
        kw = {"density": density} if c not in ("linear", "cat", "svd") else {}
        add_weighted_adapter(model, adapters, weights, name, combination_type=c,
                             generator=torch.Generator().manual_seed(seed), **kw)
        gap = zeros = count = 0.0
        for p, m in layers.items():
            d = m.delta_weight(name)
            gap += float(((d - exact[p]).double() ** 2).sum())
            zeros += float((d == 0).sum())
            count += d.numel()
            if p == keep:
                out.layer_deltas[c] = d.float().clone()
        rank = next(m.r[name] for m in layers.values())
        out.rows.append(MergeError(c, rank, math.sqrt(gap) / total, zeros / count))
        delete_adapter(model, name)
    return out
