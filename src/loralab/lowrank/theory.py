"""Random-matrix theory for a Gaussian ``W: (m, n)`` with i.i.d. N(0, s²) entries (numpy only).

Let ``M = max(m, n)``, ``k = min(m, n)`` and ``c = k/M ≤ 1``. As ``m, n → ∞`` the
eigenvalues ``λ = σ²/(s²M)`` of ``WᵀW/(s²M)`` (or ``WWᵀ``) follow the Marchenko–Pastur law
on ``[(1 − √c)², (1 + √c)²]``::

    p(λ) = sqrt((λ₊ − λ)(λ − λ₋)) / (2π c λ)

so ``x = σ/(s√M)`` has density (substitute ``λ = x²``)::

    q(x) = sqrt((b² − x²)(x² − a²)) / (π c x),   a = 1 − √c,  b = 1 + √c

and the singular values fill ``[s(√M − √k), s(√M + √k)]``. For a square matrix (``c = 1``)
this is the quarter-circle law ``q(x) = sqrt(4 − x²)/π`` on ``[0, 2]``.

The expected i-th largest singular value is taken at the quantile ``1 − (i − ½)/k`` of
``q``; the best rank-r error of a Gaussian matrix then follows from Eckart–Young as the
tail ``sqrt(Σ_{i>r} σ̄_i²)`` of those values.

The seed's "error" ``‖(α/r)·BA‖_F`` for Gaussian ``B, A`` has mean ``α·sqrt(d_out·d_in/r)``
(:func:`theory_delta_norm`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "theory_delta_norm",
    "gaussian_optimal_error",
    "gaussian_relative_error",
    "gaussian_singular_values",
    "mp_density",
    "mp_edges",
    "mp_ratio",
]


def mp_ratio(m: int, n: int) -> tuple[int, float]:
    """``(M, c)`` with ``M = max(m, n)`` and ``c = min(m, n)/M``."""
    big = max(m, n)
    return big, min(m, n) / big


def mp_edges(m: int, n: int, std: float = 1.0) -> tuple[float, float]:
    """The limits of the singular values: ``s(√M − √k)`` and ``s(√M + √k)``."""
    big, small = max(m, n), min(m, n)
    return std * (big**0.5 - small**0.5), std * (big**0.5 + small**0.5)


def mp_density(x: np.ndarray, ratio: float) -> np.ndarray:
    """Density ``q(x)`` of ``x = σ/(s√M)`` for aspect ratio ``c = ratio`` in (0, 1]
    (0 outside ``[1 − √c, 1 + √c]``; ``sqrt(4 − x²)/π`` when ``c = 1``)."""
    x = np.asarray(x, dtype=np.float64)
    a, b = 1.0 - ratio**0.5, 1.0 + ratio**0.5
    x2 = np.maximum(x * x, 1e-300)
    # sqrt((b² − x²)(x² − a²))/x = sqrt((b² − x²)(1 − a²/x²)): finite at x = 0 when a = 0.
    inner = np.clip(b * b - x * x, 0, None) * np.clip(1.0 - a * a / x2, 0, None)
    out = np.sqrt(inner) / (np.pi * ratio)
    return np.where((x >= a) & (x <= b), out, 0.0)


def _cdf_grid(ratio: float, points: int = 8193) -> tuple[np.ndarray, np.ndarray]:
    """``(x, F(x))`` on ``[a, b]``, integrated on ``x = a + (b − a)(1 − cos θ)/2``: the
    square-root edges become smooth in θ, so the trapezoid rule is accurate."""
    a, b = 1.0 - ratio**0.5, 1.0 + ratio**0.5
    theta = np.linspace(0.0, np.pi, points)
    x = a + (b - a) * (1.0 - np.cos(theta)) / 2.0
    f = mp_density(x, ratio) * (b - a) * np.sin(theta) / 2.0          # q(x)·dx/dθ
    cdf = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) / 2.0 * np.diff(theta))])
    return x, cdf / cdf[-1]


def gaussian_singular_values(m: int, n: int, std: float = 1.0) -> np.ndarray:
    """Expected singular values ``σ̄_1 ≥ … ≥ σ̄_k`` of a Gaussian ``(m, n)`` matrix:
    ``s√M·F⁻¹(1 − (i − ½)/k)``. Shape ``(k,)``."""
    big, ratio = mp_ratio(m, n)
    k = min(m, n)
    x, cdf = _cdf_grid(ratio)
    p = 1.0 - (np.arange(1, k + 1) - 0.5) / k                          # descending quantiles
    return std * big**0.5 * np.interp(p, cdf, x)


def gaussian_optimal_error(m: int, n: int, std: float = 1.0) -> np.ndarray:
    """Theory for ``‖W − W_r‖_F`` of a Gaussian matrix, ``r = 0..k``: shape ``(k + 1,)``."""
    e = gaussian_singular_values(m, n, std) ** 2
    tail = np.concatenate([np.cumsum(e[::-1])[::-1], [0.0]])
    return np.sqrt(tail)


def gaussian_relative_error(m: int, n: int) -> np.ndarray:
    """Theory for ``‖W − W_r‖_F / ‖W‖_F``, ``r = 0..k`` (independent of the scale ``s``)."""
    err = gaussian_optimal_error(m, n)
    return err / err[0]


def theory_delta_norm(d_out: int, d_in: int, rank: int, alpha: float) -> tuple[float, float]:
    """Mean and standard deviation of ``‖(α/r)·BA‖_F`` for i.i.d. N(0, 1) ``B: (d_out, r)``,
    ``A: (r, d_in)``.

    With ``k = d_in``: ``E‖BA‖_F² = d_out·k·r`` and
    ``Var‖BA‖_F² = 2·d_out·r·k·(k + r + 1) + 2·d_out²·r·k`` (condition on ``A``: each row
    ``b_i A`` is a Gaussian quadratic form in ``M = AAᵀ``). The norm's mean is taken as
    ``sqrt(E‖ΔW‖²)`` and its std by the delta method, ``std(X²) / (2·sqrt(E X²))``.
    """
    d, k, r = d_out, d_in, rank
    scale = abs(alpha / r)                 # both scale with |α/r|: no α² or α⁴ to overflow
    unit_sq = d * k * r                    # E‖BA‖_F²
    unit_var = 2 * d * r * k * (k + r + 1) + 2 * d * d * r * k
    mean = scale * math.sqrt(unit_sq)
    std = scale * math.sqrt(unit_var) / (2 * math.sqrt(unit_sq)) if mean > 0 else 0.0
    return mean, std
