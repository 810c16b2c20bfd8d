"""What each run learned and forgot (Biderman et al., 2024, "LoRA Learns Less and Forgets
Less"): plain data, filled by :mod:`loralab.experiment.forgetting`.

The **source domain** is what the base knew before fine-tuning: the tiny LM's pretraining
English (its held-out part) or a real-model preset's held-out general text. For each run::

    learned    = target val loss after − the base's      (negative: it learned)
    forgetting = source val loss after − the base's      (positive: it forgot)

A run is one point of the learning–forgetting plane; LoRA is expected to learn less (a higher
target loss than full fine-tuning) and forget less (a smaller forgetting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .verdict import Verdict, verdict_from_dict

__all__ = ["Forgetting", "ForgettingPoint", "forgetting_from_dict"]


@dataclass
class ForgettingPoint:
    """One run (or one mitigated copy of a run) in the learning–forgetting plane."""

    label: str
    method: str
    rank: int | None
    target_val_loss: float
    source_val_loss: float
    forgetting: float             # source val loss − the base's


@dataclass
class Forgetting:
    """Every run's point, the base's two losses, and the verdict on Biderman et al.'s claim.
    ``source``: which text the forgetting is measured on."""

    source: str
    base_target_val_loss: float
    base_source_val_loss: float
    points: list[ForgettingPoint] = field(default_factory=list)
    verdict: Verdict | None = None


def forgetting_from_dict(d: dict[str, Any] | None) -> Forgetting | None:
    """:class:`Forgetting` back from ``results.json`` (``None`` when the run had none)."""
    if d is None:
        return None
    v = d.get("verdict")
    return Forgetting(source=d["source"], base_target_val_loss=d["base_target_val_loss"],
                      base_source_val_loss=d["base_source_val_loss"],
                      points=[ForgettingPoint(**p) for p in d["points"]],
                      verdict=verdict_from_dict(v) if v else None)
