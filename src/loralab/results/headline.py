"""Which runs a comparison is judged on: the rank nearest 8, per method, on the last target set.

These select runs (they draw nothing): the targets, the samples, the method comparison's
figure and table and DoRA's traced runs all read the same choice from here.
"""

from __future__ import annotations

from ..method_specs import method_spec, runs_of
from .finetune import ExperimentResult, RunResult

__all__ = ["HEADLINE_RANK", "headline_rank", "headline_run", "headline_runs"]

HEADLINE_RANK = 8        # the runs the targets, samples and comparisons are judged on


def headline_rank(ranks: list[int] | tuple[int, ...]) -> int:
    """The rank nearest :data:`HEADLINE_RANK` (the larger one on a tie)."""
    return min(ranks, key=lambda r: (abs(r - HEADLINE_RANK), -r))


def headline_run(runs: list[RunResult]) -> RunResult | None:
    """The run of ``runs`` at :func:`headline_rank` of their ranks (``None`` if empty)."""
    if not runs:
        return None
    rank = headline_rank([r.rank for r in runs])
    return next(r for r in runs if r.rank == rank)


def headline_runs(result: ExperimentResult) -> list[RunResult]:
    """Full fine-tuning and, per adapter method, its run at the rank nearest 8 on the last
    target set (the runs the method comparison shows)."""
    cfg = result.config
    target = cfg.targets[-1]
    out = [r for r in result.runs if not method_spec(r.method).is_adapter]
    for method in cfg.methods:
        cand = [r for r in runs_of(result.runs, method) if r.targets == target]
        if method_spec(method).is_adapter and cand:
            out.append(headline_run(cand))
    return out
