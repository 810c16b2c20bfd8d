"""The seed's random baseline, the spectrum and :func:`analyze_svd` (all on one SVD).

:func:`random_ba_errors` is the seed's random ``ΔW = (α/r)·BA`` at each rank (without forming
``BA``), :func:`spectrum` the cumulative energy and the ranks holding 50/90/99 % of it,
:func:`compare_spectra` a Gaussian matrix, a low-rank update and the user's side by side, and
:func:`analyze_svd` puts the sweep, the explicit Eckart–Young check and the randomized path
together for one matrix. ``W: (d_out, d_in) = (m, n)``; nothing here mutates its inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import LoralabError
from .matrices import _generator, as_matrix, check_ranks, make_matrix
from .seed import draw_seed_delta
from .sweep import (
    EckartYoungCheck,
    SvdSweep,
    SweepComparison,
    compare_sweeps,
    eckart_young_check,
    randomized_sweep,
    svd_factors,
    sweep_from_singular_values,
)
from .theory import gaussian_optimal_error, theory_delta_norm

if TYPE_CHECKING:
    import torch

__all__ = [
    "ENERGY_FRACTIONS",
    "RandomRow",
    "Spectrum",
    "SpectrumComparison",
    "SvdAnalysis",
    "analyze_svd",
    "compare_spectra",
    "energy_ranks",
    "random_ba_errors",
    "spectrum",
]

ENERGY_FRACTIONS: tuple[float, ...] = (0.5, 0.9, 0.99)


# ----------------------------------------------------------------------------- baselines

@dataclass(frozen=True)
class RandomRow:
    """The seed's random update at one rank: ``‖ΔW‖_F`` for ``ΔW = (α/r)·BA`` with
    ``B: (m, r), A: (r, n) ~ N(0, 1)``, and its theory mean ± std."""

    rank: int
    delta_norm: float
    theory: float
    theory_std: float


def random_ba_errors(shape: tuple[int, int], ranks: Any, *, alpha: float = 16.0,
                     seed: int | torch.Generator = 0) -> list[RandomRow]:
    """The seed's "error" ``‖W0 − (W0 + ΔW)‖_F = ‖ΔW‖_F`` for each rank.

    ``B`` then ``A`` are drawn per rank by :func:`~loralab.lowrank.seed.draw_seed_delta`
    (the seed's order: after ``W0`` from the same generator, the numbers match
    ``loralab demo``), and :meth:`~loralab.lowrank.seed.SeedDelta.frobenius_norm` costs
    O((m + n)·r²) in float64 without forming the ``(m, n)`` product. Theory:
    :func:`loralab.lowrank.theory.theory_delta_norm`.
    """
    m, n = int(shape[0]), int(shape[1])
    ranks = check_ranks(ranks, (m, n))
    gen = _generator(seed)
    rows = []
    for r in ranks:
        draw = draw_seed_delta((m, n), r, alpha=alpha, generator=gen)  # B: (m, r), A: (r, n)
        mean, std = theory_delta_norm(m, n, r, alpha)
        rows.append(RandomRow(rank=r, delta_norm=draw.frobenius_norm(),
                              theory=abs(mean), theory_std=std))
    return rows


# ----------------------------------------------------------------------------- spectrum

def energy_ranks(sigma: Any, fractions: tuple[float, ...] = ENERGY_FRACTIONS
                 ) -> dict[str, int]:
    """``{"50%": r, ...}``: the smallest ``r`` with ``Σ_{i≤r} σ_i² ≥ f·Σ_i σ_i²`` (0 for a
    zero matrix, which holds no energy)."""
    import torch

    e = torch.as_tensor(sigma, dtype=torch.float64).square()
    cum = e.cumsum(0)
    total = float(cum[-1])
    out = {}
    for f in fractions:
        if not 0 < f <= 1:
            raise LoralabError(f"energy fraction {f} is not allowed; it must be in (0, 1]")
        if total == 0:
            out[f"{f * 100:g}%"] = 0
            continue
        target = torch.tensor(f * total * (1 - 1e-12), dtype=torch.float64)
        out[f"{f * 100:g}%"] = min(int(torch.searchsorted(cum, target)) + 1, e.numel())
    return out


@dataclass
class Spectrum:
    """A matrix's spectrum: singular values, cumulative energy
    ``Σ_{i≤r} σ_i² / ‖W‖_F²`` for ``r = 1..k`` and the energy ranks."""

    label: str
    shape: tuple[int, int]
    singular_values: list[float]
    frobenius_norm: float
    cumulative_energy: list[float]
    energy_ranks: dict[str, int]
    gaussian: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def spectrum(w: Any, *, label: str = "W", gaussian: bool = False) -> Spectrum:
    """One ``svdvals`` of ``W`` and what follows from it. ``gaussian=True`` marks a matrix
    with i.i.d. N(0, σ²) entries, for which the plots overlay the Marchenko–Pastur law."""
    import torch

    w = as_matrix(w, name=label)
    s = torch.linalg.svdvals(w).double()
    cum = s.square().cumsum(0)
    total = float(cum[-1])
    return Spectrum(label=label, shape=(int(w.shape[0]), int(w.shape[1])),
                    singular_values=s.tolist(), frobenius_norm=total**0.5,
                    cumulative_energy=(cum / total).tolist() if total > 0 else cum.tolist(),
                    energy_ranks=energy_ranks(s),
                    gaussian=gaussian)


@dataclass(frozen=True)
class SpectrumComparison:
    """What ``loralab spectrum`` computes: the spectra of a Gaussian ``W0``, a low-rank +
    noise update and (optionally) the user's matrix, all of one shape, and the ranks at
    which the energy kept is reported (``to_dict()`` is its ``--json``)."""

    ranks: tuple[int, ...]
    spectra: tuple[Spectrum, ...]

    def energy_at_ranks(self, sp: Spectrum) -> list[float]:
        """``Σ_{i≤r} σ_i² / ‖W‖_F²`` at each of :attr:`ranks`."""
        return [sp.cumulative_energy[r - 1] for r in self.ranks]

    def to_dict(self) -> dict:
        """``{"ranks", "spectra": [Spectrum.to_dict() + "energy_at_ranks"]}``."""
        return {"ranks": list(self.ranks),
                "spectra": [dict(sp.to_dict(), energy_at_ranks=self.energy_at_ranks(sp))
                            for sp in self.spectra]}


def compare_spectra(shape: tuple[int, int], ranks: Any, *, seed: int | torch.Generator = 0,
                    signal_rank: int = 32, noise: float = 0.1, dtype: str = "float32",
                    user: Any = None, user_label: str = "W") -> SpectrumComparison:
    """Draw ``W0 ~ N(0, 1)`` then ``low_rank_plus_noise(rank=signal_rank, noise)`` of
    ``shape = (m, n)`` from one generator, and take one ``svdvals`` of each and of ``user``
    (an ``(m, n)`` matrix, optional). ``ranks`` are checked against ``shape`` first."""
    ranks = check_ranks(ranks, shape)
    gen = _generator(seed)
    m, n = int(shape[0]), int(shape[1])
    gaussian = make_matrix("gaussian", m, n, seed=gen, dtype=dtype)
    update = make_matrix("lowrank", m, n, seed=gen, dtype=dtype, rank=signal_rank, noise=noise)
    spectra = [spectrum(gaussian, label="Gaussian W0 ~ N(0,1)", gaussian=True),
               spectrum(update, label=f"low rank {signal_rank} + noise {noise:g}")]
    if user is not None:
        spectra.append(spectrum(user, label=user_label))
    return SpectrumComparison(ranks=ranks, spectra=tuple(spectra))


# ----------------------------------------------------------------------------- all together

@dataclass
class SvdAnalysis:
    """What ``loralab svd`` computes for one matrix (``to_dict()`` is its ``--json``)."""

    label: str
    gaussian: bool
    alpha: float
    sweep: SvdSweep
    random: list[RandomRow]
    check: EckartYoungCheck | None = None
    randomized: SvdSweep | None = None
    comparison: SweepComparison | None = None

    def to_dict(self) -> dict:
        """``ranks``, ``singular_values``, ``optimal_error`` (Frobenius, per rank),
        ``random_error`` and the rest."""
        sw = self.sweep
        out = {"matrix": self.label, "shape": list(sw.shape), "gaussian": self.gaussian,
               "alpha": self.alpha, "ranks": sw.ranks, "singular_values": sw.singular_values,
               "frobenius_norm": sw.frobenius_norm, "optimal_error": sw.optimal_error,
               "relative_error": sw.relative_error, "spectral_error": sw.spectral_error,
               "spectral_relative": sw.spectral_relative,
               "random_error": [row.delta_norm for row in self.random],
               "random_theory": [row.theory for row in self.random],
               "random_theory_std": [row.theory_std for row in self.random]}
        if self.gaussian:
            rms = sw.frobenius_norm / (sw.shape[0] * sw.shape[1]) ** 0.5
            theory = gaussian_optimal_error(*sw.shape, std=rms)
            out["gaussian_theory_optimal_error"] = [float(theory[r]) for r in sw.ranks]
        out["eckart_young"] = self.check.to_dict() if self.check else None
        out["randomized"] = ({"sweep": self.randomized.to_dict(),
                              "comparison": self.comparison.to_dict()}
                             if self.randomized and self.comparison else None)
        return out


def analyze_svd(w: Any, ranks: Any, *, alpha: float = 16.0,
                seed: int | torch.Generator = 0, label: str = "W", gaussian: bool = False,
                check: bool = True, spectral_check: bool = True,
                randomized: bool = False) -> SvdAnalysis:
    """The sweep, the seed's random baseline and (optionally) the explicit Eckart–Young check
    and the randomized path, from ONE SVD of ``W``: the thin ``svd`` when checking (its
    ``S`` feeds the sweep), else ``svdvals``. ``seed`` drives the random ``B, A``."""
    import torch

    w = as_matrix(w, name=label)
    shape = (int(w.shape[0]), int(w.shape[1]))
    ranks = check_ranks(ranks, shape)
    factors = svd_factors(w) if check else None
    sigma = factors[1] if factors is not None else torch.linalg.svdvals(w)
    sweep = sweep_from_singular_values(sigma, ranks, shape)
    result = SvdAnalysis(label=label, gaussian=gaussian, alpha=float(alpha), sweep=sweep,
                         random=random_ba_errors(shape, ranks, alpha=alpha, seed=seed))
    if check:
        result.check = eckart_young_check(w, ranks, factors=factors, spectral=spectral_check)
    if randomized:
        result.randomized = randomized_sweep(w, ranks)
        result.comparison = compare_sweeps(sweep, result.randomized)
    return result
