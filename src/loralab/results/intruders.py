"""Intruder dimensions of each run and the λ mitigation (Shuttleworth et al., 2024): plain
data, filled by :mod:`loralab.experiment.intruders` with :mod:`loralab.lowrank.intruder`.

Per run: the mean count of intruders per analysed matrix (top-k singular vectors of
``W = W0 + ΔW`` whose best ``|cos|`` against every singular vector of ``W0`` is below ε) at
each ε of a range; one matrix's similarity map per run for the figure; and, for one LoRA run,
the target and source losses with its intruder directions scaled by each λ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import LoralabError
from .verdict import Verdict, verdict_from_dict

__all__ = ["EPSILON_GRID", "IntruderMap", "IntruderRow", "IntruderSettings", "Intruders",
           "LambdaPoint", "intruders_from_dict"]

EPSILON_GRID: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class IntruderSettings:
    """What the intruder analysis looks at: the top ``top_k`` singular vectors, the threshold
    ``epsilon`` (in (0, 1]) and the mitigation's ``lambdas`` (each in (0, 1]; 1 = none);
    PEFT's defaults: top_k 10, ε 0.5, λ 0.75. ``top_k`` against each matrix's rank is checked
    once the model is known."""

    top_k: int = 10
    epsilon: float = 0.5
    lambdas: tuple[float, ...] = (0.75, 0.5, 0.25)

    def __post_init__(self) -> None:
        k = self.top_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise LoralabError(f"intruder top_k={k!r} is not allowed; it must be an integer "
                               ">= 1 (and at most each analysed matrix's rank)")
        if not self.lambdas:
            raise LoralabError("intruder lambdas is empty; give at least one λ in (0, 1], "
                               "e.g. 0.75")
        for name, v in (("epsilon", self.epsilon), *(("lambda", x) for x in self.lambdas)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise LoralabError(f"intruder {name}={v!r} is not allowed; it must be in "
                                   "(0, 1]")
        object.__setattr__(self, "lambdas", tuple(sorted({float(x) for x in self.lambdas},
                                                         reverse=True)))


@dataclass
class IntruderRow:
    """One run: intruders per analysed matrix (mean) at each ε of ``epsilons``."""

    label: str
    method: str
    rank: int | None
    targets: str
    matrices: int
    epsilons: list[float]
    mean_counts: list[float]
    at_epsilon: float              # the mean count at the settings' ε


@dataclass
class IntruderMap:
    """``|Uᵀ U0|`` of one matrix for one run: (top_k rows, n0 columns)."""

    label: str
    layer: str
    similarity: list[list[float]]


@dataclass
class LambdaPoint:
    """One LoRA run with its intruder directions scaled by ``lam`` (1: the run as trained)."""

    label: str
    lam: float
    intruders: int                 # intruder directions scaled, over all its matrices
    target_val_loss: float
    source_val_loss: float
    forgetting: float


@dataclass
class Intruders:
    top_k: int
    epsilon: float
    layers: list[str]              # the matrices analysed (a subset on a large model)
    rows: list[IntruderRow] = field(default_factory=list)
    maps: list[IntruderMap] = field(default_factory=list)
    lambda_sweep: list[LambdaPoint] = field(default_factory=list)
    verdict: Verdict | None = None


def intruders_from_dict(d: dict[str, Any] | None) -> Intruders | None:
    """:class:`Intruders` back from ``results.json`` (``None`` when the run had none)."""
    if d is None:
        return None
    v = d.get("verdict")
    return Intruders(top_k=d["top_k"], epsilon=d["epsilon"], layers=list(d["layers"]),
                     rows=[IntruderRow(**r) for r in d["rows"]],
                     maps=[IntruderMap(**m) for m in d["maps"]],
                     lambda_sweep=[LambdaPoint(**p) for p in d["lambda_sweep"]],
                     verdict=verdict_from_dict(v) if v else None)
