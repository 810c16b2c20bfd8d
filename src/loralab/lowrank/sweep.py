"""The rank sweep from one SVD, its randomized variant, and the explicit Eckart–Young check.

For ``W: (m, n)`` with singular values ``σ_1 ≥ … ≥ σ_k`` (``k = min(m, n)``) the best rank-r
approximation is ``W_r = U_r diag(σ_1..σ_r) V_rᵀ`` and (Eckart–Young–Mirsky)::

    ‖W − W_r‖_F = sqrt(Σ_{i>r} σ_i²),     ‖W − W_r‖_2 = σ_{r+1}    (σ_{k+1} := 0)

so :func:`svd_sweep` gets every rank from one ``svdvals`` and a reversed cumulative sum.
:func:`randomized_sweep` takes the top ``q`` values from ``torch.svd_lowrank`` instead
(``r ≪ k``), :func:`compare_sweeps` says how far it is from exact, and
:func:`eckart_young_check` forms ``W − W_r`` and measures it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..errors import LoralabError
from .matrices import as_matrix, check_ranks, tail_energy

if TYPE_CHECKING:
    import torch

__all__ = [
    "EckartYoungCheck",
    "EckartYoungRow",
    "SvdSweep",
    "SweepComparison",
    "compare_sweeps",
    "eckart_young_check",
    "randomized_sweep",
    "svd_factors",
    "svd_sweep",
    "sweep_from_singular_values",
    "truncate",
]


@dataclass
class SvdSweep:
    """The best rank-r errors of one matrix for each requested rank.

    Attributes:
        shape: ``(m, n)``.
        ranks: the ranks ``r``, ascending.
        singular_values: ``σ_1..σ_k`` (exact) or the top ``q`` (randomized), descending.
        frobenius_norm: ``‖W‖_F``.
        optimal_error: ``‖W − W_r‖_F = sqrt(Σ_{i>r} σ_i²)`` per rank.
        relative_error: ``optimal_error / ‖W‖_F`` per rank.
        spectral_error: ``‖W − W_r‖_2 = σ_{r+1}`` per rank (0 when ``r = k``).
        spectral_relative: ``σ_{r+1} / σ_1`` per rank.
        method: ``"exact"`` (``svdvals``) or ``"randomized"`` (``svd_lowrank``).
    """

    shape: tuple[int, int]
    ranks: list[int]
    singular_values: list[float]
    frobenius_norm: float
    optimal_error: list[float]
    relative_error: list[float]
    spectral_error: list[float]
    spectral_relative: list[float]
    method: str = "exact"

    def to_dict(self) -> dict:
        """Plain JSON-able dict of every field."""
        return asdict(self)

    def relative_curve(self) -> list[float]:
        """``‖W − W_r‖_F / ‖W‖_F`` for every ``r = 0..len(singular_values)``."""
        import torch

        s = torch.tensor(self.singular_values, dtype=torch.float64)
        total = self.frobenius_norm**2
        head = torch.cat([s.new_zeros(1), s.square().cumsum(0)])       # Σ_{i≤r} σ_i²
        tail = tail_energy(s) if self.method == "exact" else (total - head).clamp_min(0)
        return (tail / total).sqrt().tolist() if total > 0 else [0.0] * len(tail)


def sweep_from_singular_values(sigma: torch.Tensor, ranks: Any, shape: tuple[int, int], *,
                               frobenius_sq: float | None = None,
                               method: str = "exact") -> SvdSweep:
    """Every rank's Eckart–Young errors from singular values computed once.

    ``sigma: (q,)`` descending. With ``frobenius_sq=None`` the values are the whole spectrum
    and ``‖W‖_F² = Σ σ_i²``; otherwise only the top ``q`` are known and the tail is
    ``‖W‖_F² − Σ_{i≤r} σ_i²``. Cost: O(k), vectorised over the ranks.
    """
    import torch

    ranks = check_ranks(ranks, shape)
    s = sigma.detach().to(torch.float64).flatten()                    # (q,)
    if frobenius_sq is None:
        tail = tail_energy(s)                                          # (q + 1,)
        total = float(tail[0])
    else:
        total = float(frobenius_sq)
        head = torch.cat([s.new_zeros(1), s.square().cumsum(0)])
        tail = (total - head).clamp_min(0)
    if max(ranks) > s.numel():
        raise LoralabError(f"rank {max(ranks)} needs more than the {s.numel()} singular "
                           "values computed")
    idx = torch.tensor(ranks)
    opt = tail[idx].sqrt()                                             # (R,)
    padded = torch.cat([s, s.new_zeros(1)])
    spec = padded[idx]                                                 # σ_{r+1}, (R,)
    norm = total**0.5
    s1 = float(s[0]) if s.numel() else 0.0
    return SvdSweep(
        shape=(int(shape[0]), int(shape[1])), ranks=list(ranks), singular_values=s.tolist(),
        frobenius_norm=norm, optimal_error=opt.tolist(),
        relative_error=(opt / norm).tolist() if norm > 0 else [0.0] * len(ranks),
        spectral_error=spec.tolist(),
        spectral_relative=(spec / s1).tolist() if s1 > 0 else [0.0] * len(ranks),
        method=method)


def svd_sweep(w: Any, ranks: Any) -> SvdSweep:
    """All the ranks' best errors from one ``torch.linalg.svdvals`` of ``W: (m, n)``."""
    import torch

    w = as_matrix(w)
    ranks = check_ranks(ranks, tuple(w.shape))
    return sweep_from_singular_values(torch.linalg.svdvals(w), ranks, tuple(w.shape))


def randomized_sweep(w: Any, ranks: Any, *, oversample: int = 10, niter: int = 2,
                     seed: int = 0) -> SvdSweep:
    """The sweep from the top ``q = max(ranks) + oversample`` singular values of
    ``torch.svd_lowrank`` (Halko et al., ``niter`` power iterations): O(m·n·q) instead of
    O(m·n·k). The tail uses ``‖W‖_F²`` computed directly. Seeded without touching the
    global RNG's state."""
    import torch

    w = as_matrix(w)
    ranks = check_ranks(ranks, tuple(w.shape))
    q = min(max(ranks) + oversample, min(w.shape))
    devices = [w.device.index or 0] if w.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        _, s, _ = torch.svd_lowrank(w, q=q, niter=niter)              # s: (q,)
    total = float(torch.linalg.vector_norm(w, dtype=torch.float64) ** 2)
    return sweep_from_singular_values(s, ranks, tuple(w.shape), frobenius_sq=total,
                                      method="randomized")


@dataclass
class SweepComparison:
    """How far a (randomized) sweep is from the exact one.

    ``optimal_rel_diff[i] = |approx − exact| / exact`` of ``‖W − W_r‖_F`` per rank and
    ``max_singular_value_rel_diff = max_{i ≤ max(ranks)} |σ̂_i − σ_i| / σ_i``.
    """

    ranks: list[int]
    optimal_rel_diff: list[float]
    max_optimal_rel_diff: float
    max_singular_value_rel_diff: float

    def to_dict(self) -> dict:
        return asdict(self)


def compare_sweeps(exact: SvdSweep, approx: SvdSweep) -> SweepComparison:
    """Compare two sweeps of the same matrix and ranks."""
    if exact.ranks != approx.ranks or tuple(exact.shape) != tuple(approx.shape):
        raise LoralabError("the sweeps compared must share the matrix shape and the ranks")
    diffs = [abs(a - e) / e if e > 0 else abs(a - e) / max(exact.frobenius_norm, 1e-300)
             for a, e in zip(approx.optimal_error, exact.optimal_error, strict=True)]
    top = max(exact.ranks)
    sv = [abs(a - e) / e if e > 0 else abs(a - e)
          for a, e in zip(approx.singular_values[:top], exact.singular_values[:top],
                          strict=True)]
    return SweepComparison(ranks=list(exact.ranks), optimal_rel_diff=diffs,
                           max_optimal_rel_diff=max(diffs), max_singular_value_rel_diff=max(sv))


def svd_factors(w: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U: (m, k), S: (k,), Vh: (k, n)`` with ``W = U diag(S) Vh`` (thin SVD)."""
    import torch

    return torch.linalg.svd(as_matrix(w), full_matrices=False)


def truncate(factors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], rank: int
             ) -> torch.Tensor:
    """``W_r = U_r diag(S_r) Vh_r``: ``(m, r) @ (r, n) -> (m, n)``."""
    u, s, vh = factors
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


@dataclass(frozen=True)
class EckartYoungRow:
    """One rank: the residual ``R = W − W_r`` measured, against the formulas.

    ``frobenius_diff = |‖R‖_F² − Σ_{i>r} σ_i²| / ‖W‖_F²``,
    ``spectral_diff = |‖R‖_2 − σ_{r+1}| / σ_1`` (relative to the matrix's own scale).
    """

    rank: int
    frobenius_sq: float
    frobenius_sq_formula: float
    frobenius_diff: float
    spectral: float | None
    spectral_formula: float
    spectral_diff: float | None


@dataclass
class EckartYoungCheck:
    """The check for every rank and the largest discrepancies."""

    dtype: str
    rows: list[EckartYoungRow]
    max_frobenius_diff: float
    max_spectral_diff: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def eckart_young_check(w: Any, ranks: Any, *, factors: tuple | None = None,
                       spectral: bool = True) -> EckartYoungCheck:
    """Form ``R = W − W_r`` from the SVD factors (computed once, or given) for each rank and
    compare ``‖R‖_F²`` with ``Σ_{i>r} σ_i²`` and ``‖R‖_2`` with ``σ_{r+1}``.

    ``‖R‖_F²`` is summed in float64; ``‖R‖_2`` costs one ``matrix_norm(ord=2)`` per rank
    (``spectral=False`` skips it for large matrices). Memory: one ``(m, n)`` residual.
    """
    import torch

    w = as_matrix(w)
    ranks = check_ranks(ranks, tuple(w.shape))
    factors = factors if factors is not None else svd_factors(w)
    s = factors[1]
    tail = tail_energy(s)
    total, s1 = float(tail[0]), float(s[0])
    padded = torch.cat([s.double(), s.new_zeros(1, dtype=torch.float64)])
    rows = []
    for r in ranks:
        resid = w - truncate(factors, r)                                # (m, n)
        fro = float(torch.linalg.vector_norm(resid, dtype=torch.float64) ** 2)
        spec = float(torch.linalg.matrix_norm(resid, ord=2)) if spectral else None
        sf = float(padded[r])
        rows.append(EckartYoungRow(
            rank=r, frobenius_sq=fro, frobenius_sq_formula=float(tail[r]),
            frobenius_diff=abs(fro - float(tail[r])) / total if total > 0 else 0.0,
            spectral=spec, spectral_formula=sf,
            spectral_diff=(abs(spec - sf) / s1 if s1 > 0 else 0.0) if spectral else None))
    return EckartYoungCheck(
        dtype=str(w.dtype).removeprefix("torch."), rows=rows,
        max_frobenius_diff=max(row.frobenius_diff for row in rows),
        max_spectral_diff=max(row.spectral_diff for row in rows) if spectral else None)
