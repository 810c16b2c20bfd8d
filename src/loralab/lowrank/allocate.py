"""A rank per module from its spectrum: at an energy threshold, or within a parameter budget.

Each module ``m`` has a measured update (or gradient) ``M_m: (d_out, d_in)`` with singular
values ``σ_{m,1} ≥ σ_{m,2} ≥ …``; LoRA at rank ``r`` costs ``c_m · r`` parameters,
``c_m = d_in + d_out`` (``A: (r, d_in)``, ``B: (d_out, r)``). By Eckart–Young the best
rank-r part of ``M_m`` keeps the energy ``Σ_{i≤r} σ_{m,i}²``.

* :func:`ranks_for_energy`: per module, the smallest ``r`` whose share
  ``Σ_{i≤r} σ_i² / Σ_i σ_i²`` reaches ``energy``;
* :func:`ranks_for_budget`: the ranks that keep the most total energy
  ``Σ_m Σ_{i≤r_m} σ_{m,i}²`` at a cost ``Σ_m c_m r_m ≤ budget``, greedily: each next rank
  unit goes to the module with the largest ``σ_{m,r_m+1}² / c_m`` that still fits (the gains
  of a module fall as its rank grows, so the greedy order is the order of the gains). Every
  module keeps at least rank 1 and at most ``min(d_in, d_out)``.

Nothing here mutates its inputs.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

import torch

from ..errors import LoralabError

__all__ = ["lora_params", "ranks_for_budget", "ranks_for_energy"]


def lora_params(ranks: Mapping[str, int], costs: Mapping[str, int]) -> int:
    """Trainable parameters of LoRA at ``ranks``: ``Σ_m c_m · r_m``."""
    return sum(costs[m] * r for m, r in ranks.items())


def _energy(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.detach().double().pow(2)


def ranks_for_energy(spectra: Mapping[str, torch.Tensor], energy: float) -> dict[str, int]:
    """Per module the smallest rank ``r ≥ 1`` with ``Σ_{i≤r} σ_i² ≥ energy · Σ σ_i²``
    (``0 < energy < 1``; a zero spectrum gets rank 1)."""
    if not 0.0 < energy < 1.0:
        raise LoralabError(f"energy={energy!r} is not allowed; give a share in (0, 1), "
                           "e.g. 0.9")
    out = {}
    for name, sigma in spectra.items():
        e = _energy(sigma)
        total = float(e.sum())
        if total <= 0.0:
            out[name] = 1
            continue
        share = torch.cumsum(e, 0) / total
        out[name] = max(1, int((share < energy - 1e-12).sum()) + 1)
        out[name] = min(out[name], len(e))
    return out


def _gain(e: torch.Tensor, r: int, cost: int) -> float:
    """Energy per parameter of the module's rank ``r + 1`` (0 past its spectrum)."""
    return float(e[r]) / cost if r < len(e) else 0.0


def ranks_for_budget(spectra: Mapping[str, torch.Tensor], costs: Mapping[str, int],
                     budget: int, max_ranks: Mapping[str, int],
                     start: Mapping[str, int] | None = None) -> dict[str, int]:
    """Ranks with ``Σ c_m r_m ≤ budget`` keeping the most energy (module doc).

    ``start``: ranks to begin from (default 1 each), trimmed first, lowest
    ``σ_{m,r_m}² / c_m`` first, while over the budget, then grown greedily. ``max_ranks``:
    each module's ceiling (``min(d_in, d_out)`` at most)."""
    ranks = {m: max(1, min(int((start or {}).get(m, 1)), max_ranks[m])) for m in spectra}
    floor = lora_params({m: 1 for m in spectra}, costs)
    if not floor <= budget:
        raise LoralabError(f"budget={budget} is not allowed; rank 1 on these "
                           f"{len(spectra)} modules already takes {floor} parameters")
    energies = {m: _energy(s) for m, s in spectra.items()}
    spent = lora_params(ranks, costs)
    while spent > budget:               # trim the least useful rank units
        m = min((m for m in ranks if ranks[m] > 1),
                key=lambda m: _gain(energies[m], ranks[m] - 1, costs[m]))
        ranks[m] -= 1
        spent -= costs[m]
    heap = [(-_gain(energies[m], ranks[m], costs[m]), m) for m in ranks
            if ranks[m] < max_ranks[m]]
    heapq.heapify(heap)
    while heap:
        _, m = heapq.heappop(heap)
        if spent + costs[m] > budget:
            continue                    # does not fit; a cheaper module may
        ranks[m] += 1
        spent += costs[m]
        if ranks[m] < max_ranks[m]:
            heapq.heappush(heap, (-_gain(energies[m], ranks[m], costs[m]), m))
    return ranks
