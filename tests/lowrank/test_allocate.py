"""Ranks from spectra (loralab.lowrank.allocate) against brute force and numpy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from loralab.errors import LoralabError
from loralab.lowrank.allocate import lora_params, ranks_for_budget, ranks_for_energy


def _spectra(seed: int, n: int = 3, k: int = 6) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return {f"m{i}": torch.tensor(np.sort(rng.gamma(1.0, size=k))[::-1].copy())
            for i in range(n)}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("energy", [0.3, 0.9, 0.99])
def test_energy_rank_is_the_smallest_that_reaches_the_share(seed: int, energy: float) -> None:
    spectra = _spectra(seed)
    ranks = ranks_for_energy(spectra, energy)
    for name, s in spectra.items():
        e = s.numpy() ** 2
        share = np.cumsum(e) / e.sum()
        r = ranks[name]
        assert share[r - 1] >= energy - 1e-12
        assert r == 1 or share[r - 2] < energy


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget", [3 * 10, 7 * 10, 12 * 10])
def test_budget_with_equal_costs_is_the_brute_force_optimum(seed: int, budget: int) -> None:
    spectra = _spectra(seed)
    costs = {m: 10 for m in spectra}
    ceil = {m: 6 for m in spectra}
    ranks = ranks_for_budget(spectra, costs, budget, ceil)
    assert lora_params(ranks, costs) <= budget

    def kept(rs: dict[str, int]) -> float:
        return sum(float((spectra[m][:r] ** 2).sum()) for m, r in rs.items())

    best = max(kept(dict(zip(spectra, rs, strict=True)))
               for rs in itertools.product(range(1, 7), repeat=3)
               if 10 * sum(rs) <= budget)
    assert kept(ranks) == pytest.approx(best, rel=1e-12)


def test_budget_respects_costs_ceilings_and_trims_a_start() -> None:
    spectra = _spectra(0, n=4)
    costs = {"m0": 10, "m1": 25, "m2": 10, "m3": 25}
    ceil = {"m0": 2, "m1": 6, "m2": 6, "m3": 6}
    ranks = ranks_for_budget(spectra, costs, 200, ceil)
    assert lora_params(ranks, costs) <= 200 and ranks["m0"] <= 2
    assert 200 - lora_params(ranks, costs) < 10 or all(ranks[m] == ceil[m] for m in ranks)
    start = {m: 6 for m in spectra}
    trimmed = ranks_for_budget(spectra, costs, 200, ceil, start)
    assert lora_params(trimmed, costs) <= 200 and all(r >= 1 for r in trimmed.values())


def test_bad_energy_and_budget_are_refused() -> None:
    spectra = _spectra(0)
    for e in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(LoralabError, match="energy"):
            ranks_for_energy(spectra, e)
    with pytest.raises(LoralabError, match="budget=29 is not allowed"):
        ranks_for_budget(spectra, {m: 10 for m in spectra}, 29, {m: 6 for m in spectra})
    assert set(spectra) == {"m0", "m1", "m2"}        # inputs untouched
