"""Learned low-rank fits (what LoRA's training does) and the LoRA paper's subspace similarity.

:func:`fit_rank` learns ``B: (m, r)`` and ``A: (r, n)`` by Adam so that
``ΔW = (α/r)·B A`` approximates a target ``W: (m, n)``, from LoRA's initialisation
(``B = 0``, ``A`` Kaiming-uniform with bound ``1/√n``, as PEFT does), minimising::

    L(B, A) = ‖W − (α/r)·BA‖_F² / ‖W‖_F²

The Eckart–Young floor ``sqrt(Σ_{i>r} σ_i²)`` bounds ``‖W − ΔW‖_F`` from below, so
``learned / optimal ≥ 1`` and a good fit ends near 1. The target is scaled to unit RMS
entry before the fit (and the errors scaled back), so the learning rate does not depend on
the matrix's scale; the rate follows a cosine from ``lr`` to ``lr/100``.

:func:`subspace_similarity` is the LoRA paper's (Hu et al. 2021, section 7.2)::

    φ(A₁, A₂, i, j) = ‖U₁ⁱᵀ U₂ʲ‖_F² / min(i, j)  ∈ [0, 1]

with ``U₁ⁱ: (n, i)`` the top-i right singular vectors of ``A₁: (r₁, n)``. For independent
random subspaces ``E‖U₁ⁱᵀU₂ʲ‖_F² = i·j/n``, so the random baseline is ``max(i, j)/n``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import LoralabError
from .matrices import as_matrix, check_ranks, tail_energy

if TYPE_CHECKING:
    import torch

__all__ = [
    "FitResult",
    "RankFit",
    "SubspaceSimilarity",
    "compare_subspaces",
    "fit_lowrank",
    "fit_rank",
    "phi",
    "random_similarity",
    "subspace_similarity",
]


@dataclass
class RankFit:
    """One learned fit.

    Attributes:
        rank: ``r``.
        steps: Adam steps taken.
        learned_error: ``‖W − (α/r)·BA‖_F`` at the end (float64).
        optimal_error: the Eckart–Young floor ``sqrt(Σ_{i>r} σ_i²)``.
        history: ``‖W − ΔW‖_F`` before step 1, 2, …, ``steps`` and after the last one
            (``steps + 1`` values; the first is ``‖W‖_F`` since ``B = 0``).
        b, a: the learned ``B: (m, r)``, ``A: (r, n)``; ``a_init``: ``A`` before training.
    """

    rank: int
    steps: int
    learned_error: float
    optimal_error: float
    history: list[float] = field(repr=False)
    b: torch.Tensor = field(repr=False, compare=False)
    a: torch.Tensor = field(repr=False, compare=False)
    a_init: torch.Tensor = field(repr=False, compare=False)

    @property
    def ratio(self) -> float:
        """``learned_error / optimal_error`` (≥ 1 up to rounding; inf when the floor is 0)."""
        if self.optimal_error > 0:
            return self.learned_error / self.optimal_error
        return 1.0 if self.learned_error == 0 else math.inf

    def to_dict(self, history_points: int = 200) -> dict:
        """``{"rank", "learned_error", "optimal_error", "steps", "ratio", "history"}``;
        the history is thinned to at most ``history_points`` ``(step, error)`` pairs."""
        n = len(self.history)
        stride = max(1, math.ceil(n / history_points))
        idx = sorted(set(range(0, n, stride)) | {n - 1})
        return {"rank": self.rank, "learned_error": self.learned_error,
                "optimal_error": self.optimal_error, "steps": self.steps,
                "ratio": self.ratio if math.isfinite(self.ratio) else None,   # floor 0
                "history": {"step": idx, "error": [self.history[i] for i in idx]}}


@dataclass
class SubspaceSimilarity:
    """``φ(A₁, A₂, i, j)`` for ``i ≤ rank_1``, ``j ≤ rank_2`` (row i−1, column j−1), for the
    learned ``A``s and for the same two ``A``s at initialisation (random)."""

    rank_1: int
    rank_2: int
    d_in: int
    phi: list[list[float]]
    phi_init: list[list[float]]

    def baseline(self, i: int, j: int) -> float:
        """The random baseline ``max(i, j)/d_in``."""
        return random_similarity(i, j, self.d_in)

    def to_dict(self) -> dict:
        return {"rank_1": self.rank_1, "rank_2": self.rank_2, "d_in": self.d_in,
                "phi": self.phi, "phi_init": self.phi_init,
                "baseline": [[self.baseline(i, j) for j in range(1, self.rank_2 + 1)]
                             for i in range(1, self.rank_1 + 1)]}


@dataclass
class FitResult:
    """Every rank's fit of one target, and φ between two of them."""

    shape: tuple[int, int]
    frobenius_norm: float
    alpha: float
    lr: float
    seed: int
    fits: list[RankFit]
    similarity: SubspaceSimilarity | None = None

    def to_dict(self) -> dict:
        """``{"shape", "frobenius_norm", "alpha", "lr", "seed", "fits": [...],
        "similarity"}``."""
        return {"shape": list(self.shape), "frobenius_norm": self.frobenius_norm,
                "alpha": self.alpha, "lr": self.lr, "seed": self.seed,
                "fits": [f.to_dict() for f in self.fits],
                "similarity": self.similarity.to_dict() if self.similarity else None}


def _check_fit_options(steps: int, lr: float, alpha: float) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise LoralabError(f"steps={steps!r} is not allowed; it must be an integer >= 1")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise LoralabError(f"lr={lr!r} is not allowed; it must be a finite number > 0")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha != 0):
        raise LoralabError(f"alpha={alpha!r} is not allowed; it must be a finite number != 0")


def _check_converged(losses: torch.Tensor, final: float, rank: int, lr: float,
                     alpha: float) -> None:
    """Refuse a fit whose error left the floating-point range: it diverged."""
    import torch

    bad = ~torch.isfinite(losses)
    if bool(bad.any()) or not math.isfinite(final):
        step = int(bad.nonzero()[0]) + 1 if bool(bad.any()) else len(losses)
        raise LoralabError(f"the fit at rank {rank} diverged at step {step}: its error became "
                           f"inf/NaN (B and A are no longer finite); lower the learning rate "
                           f"(--lr, now {lr:g}) or the scale α (--alpha, now {alpha:g})")


def fit_rank(w: Any, rank: int, *, steps: int = 500, lr: float = 2e-2, alpha: float = 16.0,
             seed: int = 0, optimal_error: float | None = None) -> RankFit:
    """Learn ``B, A`` at one rank from LoRA's init (see the module docstring).

    ``optimal_error`` is the floor when already known (else one ``svdvals``). Works in
    ``W``'s dtype; the random init comes from a private generator seeded with ``seed``.
    """
    import torch

    w = as_matrix(w, name="target")
    (rank,) = check_ranks((rank,), tuple(w.shape))
    _check_fit_options(steps, lr, alpha)
    m, n = w.shape
    if optimal_error is None:
        optimal_error = float(tail_energy(torch.linalg.svdvals(w))[rank].sqrt())
    norm = float(torch.linalg.vector_norm(w, dtype=torch.float64))
    rms = norm / math.sqrt(m * n) or 1.0
    target = w.detach() / rms                                          # unit RMS entry
    scale = alpha / rank
    gen = torch.Generator().manual_seed(seed)
    a_init = (torch.rand(rank, n, generator=gen, dtype=w.dtype) * 2 - 1) / math.sqrt(n)
    a = a_init.clone().requires_grad_(True)                            # A: (r, n)
    b = torch.zeros(m, rank, dtype=w.dtype, requires_grad=True)        # B: (m, r) = 0
    opt = torch.optim.Adam([b, a], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 100)
    losses = torch.full((steps,), math.nan, dtype=torch.float64)
    try:
        with torch.enable_grad():
            for t in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = (target - scale * (b @ a)).square().mean()      # (m, r)@(r, n)->(m, n)
                loss.backward()
                losses[t] = loss.detach()
                if not math.isfinite(float(losses[t])):
                    break
                opt.step()
                sched.step()
    except RuntimeError as exc:                # Adam's arithmetic overflowing a float
        if "overflow" not in str(exc):
            raise
    b, a = b.detach(), a.detach()
    final = torch.linalg.vector_norm(
        w.double() - (scale * rms) * (b.double() @ a.double()))        # float64 residual
    _check_converged(losses, float(final), rank, lr, alpha)
    history = (losses * (m * n)).sqrt().mul(rms).tolist() + [float(final)]
    return RankFit(rank=rank, steps=steps, learned_error=float(final),
                   optimal_error=float(optimal_error), history=history,
                   b=b * rms, a=a, a_init=a_init)


def fit_lowrank(w: Any, ranks: Any, *, steps: int = 500, lr: float = 2e-2,
                alpha: float = 16.0, seed: int = 0,
                compare: tuple[int, int] | None = None) -> FitResult:
    """:func:`fit_rank` at each rank (one ``svdvals`` for all the floors), then φ between
    the fits at ranks ``compare`` (default: the two largest; none with one rank).

    The stored ``B`` is rescaled so that ``(α/r)·B A`` approximates ``W`` itself.
    """
    import torch

    w = as_matrix(w, name="target")
    ranks = check_ranks(ranks, tuple(w.shape))
    _check_fit_options(steps, lr, alpha)
    if not bool(w.any()):
        raise LoralabError("the target is all zeros: every rank fits it exactly (B = 0 is "
                           "already optimal), so there is nothing to learn; give a non-zero "
                           "matrix")
    if compare is not None:
        compare = tuple(compare)
        missing = [r for r in compare if r not in ranks]
        if len(compare) != 2 or missing or compare[0] == compare[1]:
            raise LoralabError(f"compare={compare!r} is not allowed; give two different ranks "
                               f"among the fitted ones {list(ranks)}")
    elif len(ranks) >= 2:
        compare = (ranks[-2], ranks[-1])
    tail = tail_energy(torch.linalg.svdvals(w))
    fits = [fit_rank(w, r, steps=steps, lr=lr, alpha=alpha, seed=seed + r,
                     optimal_error=float(tail[r].sqrt())) for r in ranks]
    sim = None
    if compare is not None:
        by_rank = {f.rank: f for f in fits}
        sim = compare_subspaces(by_rank[compare[0]], by_rank[compare[1]])
    return FitResult(shape=(int(w.shape[0]), int(w.shape[1])),
                     frobenius_norm=float(tail[0].sqrt()), alpha=float(alpha), lr=float(lr),
                     seed=seed, fits=fits, similarity=sim)


def _right_singular_vectors(a: torch.Tensor) -> torch.Tensor:
    """``Vh: (r, n)``: the right singular vectors of ``A: (r, n)`` as rows, by ``σ`` desc."""
    import torch

    return torch.linalg.svd(a.detach().double(), full_matrices=False)[2]


def subspace_similarity(a1: Any, a2: Any) -> torch.Tensor:
    """``φ(A₁, A₂, i, j)`` for every ``i ≤ r₁``, ``j ≤ r₂`` at once: shape ``(r₁, r₂)``.

    ``P = V₁ V₂ᵀ`` (``(r₁, n) @ (n, r₂)``) holds the cosines between the singular vectors;
    ``‖U₁ⁱᵀ U₂ʲ‖_F²`` is the sum of ``P²`` over the top-left ``i × j`` block, i.e. a 2-D
    cumulative sum.
    """
    import torch

    a1, a2 = as_matrix(a1, name="A1"), as_matrix(a2, name="A2")
    if a1.shape[1] != a2.shape[1]:
        raise LoralabError(f"A1 {tuple(a1.shape)} and A2 {tuple(a2.shape)} must share d_in "
                           "(their number of columns)")
    v1, v2 = _right_singular_vectors(a1), _right_singular_vectors(a2)  # (r1, n), (r2, n)
    p2 = (v1 @ v2.T).square()                                          # (r1, r2)
    block = p2.cumsum(0).cumsum(1)                                     # Σ over the i × j block
    i = torch.arange(1, v1.shape[0] + 1, dtype=torch.float64)[:, None]
    j = torch.arange(1, v2.shape[0] + 1, dtype=torch.float64)[None, :]
    return block / torch.minimum(i, j)


def phi(a1: Any, a2: Any, i: int, j: int) -> float:
    """``φ(A₁, A₂, i, j) = ‖U₁ⁱᵀ U₂ʲ‖_F² / min(i, j)`` for one ``(i, j)``."""
    sim = subspace_similarity(a1, a2)
    if not (1 <= i <= sim.shape[0] and 1 <= j <= sim.shape[1]):
        raise LoralabError(f"(i, j) = ({i}, {j}) is not allowed; i must be 1..{sim.shape[0]} "
                           f"and j 1..{sim.shape[1]}")
    return float(sim[i - 1, j - 1])


def random_similarity(i: int, j: int, d: int) -> float:
    """``E φ`` for independent random subspaces of dimensions ``i, j`` in ``R^d``:
    ``max(i, j)/d``."""
    return max(i, j) / d


def compare_subspaces(fit1: RankFit, fit2: RankFit) -> SubspaceSimilarity:
    """φ between two fits' learned ``A``s, and between their initial (random) ``A``s."""
    return SubspaceSimilarity(
        rank_1=fit1.rank, rank_2=fit2.rank, d_in=int(fit1.a.shape[1]),
        phi=subspace_similarity(fit1.a, fit2.a).tolist(),
        phi_init=subspace_similarity(fit1.a_init, fit2.a_init).tolist())
