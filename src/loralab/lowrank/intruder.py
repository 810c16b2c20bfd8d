"""Intruder dimensions (Shuttleworth et al., 2024, "LoRA vs Full Fine-tuning: An Illusion of
Equivalence"): singular vectors of a fine-tuned weight that no pretrained one resembles.

For a pretrained ``W0: (m, n)`` and a fine-tuned ``W = W0 + ΔW``, with the SVDs
``W0 = U0 S0 V0ᵀ`` and ``W = U S Vᵀ`` (``U0: (m, k0)``, ``U: (m, k)``, ``k = min(m, n)``), the
similarity of W's ``i``-th left singular vector to the pretrained ones is::

    c_i = max_j |⟨u_i, u0_j⟩|          (i < top_k, j over all of W0's k0 singular vectors)

and ``u_i`` is an **intruder** when ``c_i < ε``. Full fine-tuning keeps every top vector near
a pretrained one (c_i ≈ 1); LoRA adds intruders, more at low rank. :func:`similarity_map` is
the whole ``|Uᵀ U0|`` block the paper draws. (When ``m ≤ n`` the ``u0_j`` span ``R^m``, so
``c_i ≥ 1/√m`` for any vector: on a narrow matrix a small ε finds nothing.)

**Mitigation** (the paper's §6, PEFT's ``reduce_intruder_dimension``): scale the intruder
directions of ``W`` by ``λ`` and keep the adapter's rank ``r``::

    W' = W + (λ − 1) Σ_{i intruder} σ_i u_i v_iᵀ,      ΔW' = [W' − W0]_r

(``[·]_r``: best rank-r approximation, Eckart–Young). ``λ = 1`` changes nothing.

The SVDs run in float64 up to :data:`FP64_NUMEL` entries and in float32 above (a real
model's matrices; cosines need no more). Nothing here mutates its inputs or prints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import LoralabError

__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_LAMBDA",
    "DEFAULT_TOP_K",
    "FP64_NUMEL",
    "check_intruder_args",
    "intruder_cosines",
    "intruder_counts",
    "left_basis",
    "mitigate_intruders",
    "similarity_map",
]

DEFAULT_TOP_K = 10
DEFAULT_EPSILON = 0.5
DEFAULT_LAMBDA = 0.75
FP64_NUMEL = 1 << 18


def _unit_interval(name: str, value: float) -> None:
    v = float(value)
    if not (v == v and 0.0 < v <= 1.0):              # NaN fails v == v
        raise LoralabError(f"{name}={value!r} is not allowed; it must be in (0, 1]")


def check_intruder_args(top_k: int, epsilons: Sequence[float] = (),
                        lambdas: Sequence[float] = (), shape: Sequence[int] | None = None
                        ) -> None:
    """Refuse ``top_k < 1``, ``top_k > min(shape)`` (the matrix's rank bound), any ε or λ
    outside ``(0, 1]`` (NaN included): one :class:`LoralabError` line."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise LoralabError(f"top_k={top_k!r} is not allowed; it must be an integer >= 1")
    if shape is not None and top_k > min(shape):
        raise LoralabError(f"top_k={top_k} is not allowed for a {tuple(shape)} matrix; its "
                           f"rank is at most {min(shape)}, so top_k must be <= {min(shape)}")
    for e in epsilons:
        _unit_interval("epsilon", e)
    for lam in lambdas:
        _unit_interval("lambda", lam)


def _work(w: torch.Tensor) -> torch.Tensor:
    w = w.detach().cpu()
    return w.double() if w.numel() <= FP64_NUMEL else w.float()


def left_basis(w0: torch.Tensor) -> torch.Tensor:
    """``U0: (m, min(m, n))``, every left singular vector of ``w0: (m, n)`` (compute once per
    pretrained matrix, reuse for every run)."""
    return torch.linalg.svd(_work(w0), full_matrices=False)[0]


def intruder_cosines(u0: torch.Tensor, w: torch.Tensor, top_k: int) -> torch.Tensor:
    """``c: (top_k,)``, ``c_i = max_j |⟨u_i, u0_j⟩|`` for W's top-k left singular vectors
    ``u_i`` against the pretrained basis ``u0 = left_basis(W0)`` (module doc)."""
    check_intruder_args(top_k, shape=tuple(w.shape))
    u = torch.linalg.svd(_work(w), full_matrices=False)[0][:, :top_k]   # (m, top_k)
    return (u.T @ u0.to(u.dtype)).abs().max(dim=1).values               # (top_k, k0) -> (top_k,)


def intruder_counts(cosines: torch.Tensor, epsilons: Sequence[float]) -> list[int]:
    """How many of ``cosines`` lie below each ε: the intruders at that threshold."""
    check_intruder_args(1, epsilons)
    return [int((cosines < e).sum()) for e in epsilons]


def similarity_map(u0: torch.Tensor, w: torch.Tensor, top_k: int, n0: int) -> torch.Tensor:
    """``|Uᵀ U0|`` restricted to W's top ``top_k`` and W0's top ``n0`` singular vectors:
    ``(top_k, n0)``, the paper's picture (a bright diagonal: no intruder; a dark row: one)."""
    check_intruder_args(top_k, shape=tuple(w.shape))
    u = torch.linalg.svd(_work(w), full_matrices=False)[0][:, :top_k]
    return (u.T @ u0[:, :n0].to(u.dtype)).abs()


def mitigate_intruders(w0: torch.Tensor, delta: torch.Tensor, *, rank: int | None = None,
                       top_k: int = DEFAULT_TOP_K, epsilon: float = DEFAULT_EPSILON,
                       lam: float = DEFAULT_LAMBDA, u0: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, int]:
    """``(ΔW', n)``: ``ΔW`` with the intruder directions of ``W = W0 + ΔW`` scaled by ``λ``
    and cut back to ``rank`` (``None``: not cut), and the number ``n`` of intruders; shape and
    dtype of ``delta``. ``n = 0`` returns ``delta`` cut to ``rank`` (module doc's formula;
    PEFT's ``reduce_intruder_dimension`` per layer)."""
    check_intruder_args(top_k, (epsilon,), (lam,), shape=tuple(delta.shape))
    w = _work(w0) + _work(delta).to(_work(w0).dtype)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)       # (m, k), (k,), (k, n)
    basis = left_basis(w0) if u0 is None else u0.to(u.dtype)
    cos = (u[:, :top_k].T @ basis).abs().max(dim=1).values
    idx = torch.nonzero(cos < epsilon).flatten()
    new = w - _work(w0).to(w.dtype)
    if len(idx):
        new = new + (lam - 1.0) * (u[:, idx] * s[idx]) @ vh[idx]   # (m, n_i)(n_i, n)
    if rank is not None and rank < min(new.shape):
        uu, ss, vv = torch.linalg.svd(new, full_matrices=False)
        new = (uu[:, :rank] * ss[:rank]) @ vv[:rank]              # (m, r)(r, n)
    return new.to(delta.dtype), int(len(idx))
