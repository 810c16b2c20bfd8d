"""The seed demo's types: its ``LoraConfig`` (exact names and defaults) and the result.

This module imports nothing above the helpers, so :mod:`loralab.plots` can read the types.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..errors import LoralabError

__all__ = ["DTYPES", "DType", "DemoResult", "LoraConfig", "RankRow"]

DType = Literal["float32", "float64"]
DTYPES: tuple[str, ...] = ("float32", "float64")


@dataclass
class LoraConfig:
    """The seed's configuration, with its exact names and defaults.

    Attributes:
        hidden_size: ``d``; the simulated weight is ``(d, d)``.
        rank_candidates: the ranks ``r`` to try (each ``1 ≤ r ≤ d``).
        alpha: the LoRA scale ``α``; the update is multiplied by ``α/r``.
    """

    hidden_size: int = 512
    rank_candidates: tuple[int, ...] = (2, 4, 8, 16, 32)
    alpha: float = 16.0

    def __post_init__(self) -> None:
        d = self.hidden_size
        if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise LoralabError(f"hidden_size={d!r} is not allowed; it must be an integer >= 1")
        ranks = tuple(self.rank_candidates)
        if not ranks:
            raise LoralabError("rank_candidates is empty; give at least one rank, e.g. (2, 4, 8)")
        for r in ranks:
            if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
                raise LoralabError(f"rank {r!r} is not allowed; ranks must be integers >= 1")
            if r > d:
                raise LoralabError(f"rank {r} is not allowed; ranks must be <= hidden_size={d}")
        self.rank_candidates = ranks
        try:
            alpha = float(self.alpha)
        except (TypeError, ValueError):
            raise LoralabError(f"alpha={self.alpha!r} is not a number") from None
        if not math.isfinite(alpha):
            raise LoralabError(f"alpha={self.alpha!r} is not allowed; it must be finite")
        self.alpha = alpha


@dataclass(frozen=True)
class RankRow:
    """One rank's numbers.

    Attributes:
        rank: ``r``.
        delta_norm: the seed's "error" ``‖W0 − (W0 + ΔW)‖_F`` (= ``‖ΔW‖_F`` up to rounding).
        theory: ``sqrt(E‖ΔW‖_F²) = α·sqrt(d_out·d_in / r)``.
        theory_std: the standard deviation of ``‖ΔW‖_F`` for Gaussian ``A, B``.
        optimal_error: ``‖W0 − W0_r‖_F = sqrt(Σ_{i>r} σ_i²)``, the best any rank-r matrix can do.
        optimal_relative: ``optimal_error / ‖W0‖_F``.
        trainable_params: ``r·(d_in + d_out)`` (``2dr`` when square).
        full_params: ``d_in·d_out`` (``d²``).
    """

    rank: int
    delta_norm: float
    theory: float
    theory_std: float
    optimal_error: float
    optimal_relative: float
    trainable_params: int
    full_params: int


@dataclass
class DemoResult:
    """Everything the demo computed; ``to_dict()`` is what ``--json`` writes."""

    config: LoraConfig
    seed: int
    dtype: str
    w0_norm: float
    singular_values: list[float]
    rows: list[RankRow] = field(default_factory=list)
    plot_path: str | None = None

    def to_dict(self) -> dict:
        """Plain JSON-able dict: ``{"config", "seed", "dtype", "w0_norm", "rows", ...}``."""
        return {
            "config": asdict(self.config),
            "seed": self.seed,
            "dtype": self.dtype,
            "w0_norm": self.w0_norm,
            "rows": [asdict(row) for row in self.rows],
            "singular_values": self.singular_values,
            "plot_path": self.plot_path,
        }
