"""What a study measured: the lr study's curves, the placement table, and their verdicts.

:class:`StudyResult` sits in :class:`~loralab.results.finetune.ExperimentResult` (``study``;
``results.json``'s ``"study"``) when the experiment ran a study
(:mod:`loralab.results.study_plan`); :mod:`loralab.experiment.studies` fills it from the
runs, :mod:`loralab.plots.studies` draws it, the tables and the report print it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import LoralabError
from .verdict import Verdict, verdict_from_dict

__all__ = ["LrCurve", "PlacementRow", "StudyResult", "study_from_dict"]


@dataclass
class LrCurve:
    """Final val loss against learning rate for one kind of run (full, or LoRA at a rank).

    ``best_lr``: the grid's rate of least final val loss; ``best_lr_fit``: the vertex of the
    parabola through that point and its two neighbours in ``(log10 lr, loss)`` (the grid's
    rate itself when the best sits at an edge); ``at_edge``: the best is the grid's lowest
    or highest rate, so the true best may lie outside it.
    """

    label: str                    # "full" or "lora-r4"
    method: str
    rank: int | None
    lrs: list[float]
    val_loss: list[float]
    best_lr: float
    best_lr_fit: float
    best_val_loss: float
    at_edge: bool


@dataclass
class PlacementRow:
    """One run of the placement study: where LoRA went, its rank, what it trained.

    ``budget_rank``: the all-linear rank whose parameter budget the row matches (``None``
    for full fine-tuning); ``param_ratio``: trainable parameters over that budget's.
    """

    label: str
    targets: str
    rank: int | None
    budget_rank: int | None
    trainable_params: int
    param_ratio: float | None          # None: full fine-tuning (no LoRA budget)
    final_val_loss: float


@dataclass
class StudyResult:
    """A study's table, its verdicts, and its time beside its FLOP floor.

    ``floor_s``: the experiment's FLOP floor (:class:`~loralab.results.floor.Floor`: its
    training, evaluation and analysis FLOPs over the matmul peak measured in the run);
    ``wall_s``: the experiment's wall time (base, training, analysis), the floor's too.
    """

    name: str
    curves: list[LrCurve] = field(default_factory=list)
    placement: list[PlacementRow] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)   # lr: LoRA-best / full-best
    floor_s: float | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdicts": [v.to_dict() for v in self.verdicts]}


def study_from_dict(d: dict[str, Any] | None) -> StudyResult | None:
    """A :class:`StudyResult` back from :meth:`StudyResult.to_dict` (``None`` stays)."""
    if d is None:
        return None
    try:
        return StudyResult(name=str(d["name"]), curves=[LrCurve(**c) for c in d["curves"]],
                           placement=[PlacementRow(**p) for p in d["placement"]],
                           verdicts=[verdict_from_dict(v) for v in d["verdicts"]],
                           ratios={str(k): float(v) for k, v in d["ratios"].items()},
                           floor_s=d.get("floor_s"), wall_s=float(d.get("wall_s", 0.0)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LoralabError(f"the study in results.json is malformed ({exc}); rerun the "
                           "study") from None
