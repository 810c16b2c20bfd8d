"""Learning against forgetting for every run (Biderman et al., 2024): each run's target val
loss and its source domain's val loss against the base's (:mod:`loralab.results.forgetting`),
from numbers the runs already measured; the verdict in :mod:`.verdicts`."""

from __future__ import annotations

from ..results.finetune import ExperimentResult
from ..results.forgetting import Forgetting, ForgettingPoint
from .verdicts import compared_runs, forgetting_verdict, only_runs

__all__ = ["forgetting_study"]


def forgetting_study(result: ExperimentResult, source: str) -> Forgetting | None:
    """One point per run that measured its source loss; ``None`` when the base did not."""
    before = result.base.general_val_loss
    if before is None:
        return None
    points = [ForgettingPoint(label=r.label, method=r.method, rank=r.rank,
                              target_val_loss=r.final_val_loss,
                              source_val_loss=r.general_val_loss,
                              forgetting=r.general_val_loss - before)
              for r in result.runs if r.general_val_loss is not None]
    study = Forgetting(source=source, base_target_val_loss=result.base_val_loss,
                       base_source_val_loss=before, points=points)
    compared = compared_runs(result.runs)
    study.verdict = forgetting_verdict(only_runs(study, compared), result.analysis, compared)
    return study
