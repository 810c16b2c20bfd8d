"""A study's tables and verdict lines (:func:`study_lines`), printed and written to results.md
before the experiment's tables (:func:`.tables.format_tables`).

The lr study: one row per curve, its final val loss at every learning rate of the grid, the
best rate (grid, fitted), its ratio to full fine-tuning's, ``*`` where the best sits at
the grid's edge. The placement study: one row per run with its rank, the budget it matches,
its trainable parameters and their ratio to the budget. Then each :class:`Verdict` on one
line, and the wall time beside the FLOP floor.
"""

from __future__ import annotations

from ..results.finetune import ExperimentResult
from ..results.study import StudyResult
from ..results.verdict import Verdict
from .tables import _f, _titled

__all__ = ["study_lines", "verdict_lines"]


def _lr_lines(s: StudyResult, h: str, markdown: bool) -> list[str]:
    grid = sorted({lr for c in s.curves for lr in c.lrs})
    rows = []
    for c in s.curves:
        loss = dict(zip(c.lrs, c.val_loss, strict=True))
        ratio = s.ratios.get(c.label)
        rows.append([c.label, *(_f(loss.get(lr)) for lr in grid),
                     f"{c.best_lr:g}{'*' if c.at_edge else ''}", f"{c.best_lr_fit:.2g}",
                     "1" if c.method == "full" else _f(ratio, ".1f")])
    header = ["run", *(f"lr {lr:g}" for lr in grid), "best lr", "fitted", "÷ full"]
    lines = _titled(f"{h}Learning-rate study: final val loss against learning rate (same "
                    "steps and data; * = best at the grid's edge)", header, rows, markdown)
    return lines


def _placement_lines(s: StudyResult, h: str, markdown: bool) -> list[str]:
    rows = [[r.label, r.targets, _f(r.rank, "d"), _f(r.budget_rank, "d"),
             f"{r.trainable_params:,}",
             "—" if r.param_ratio is None else f"{100 * (r.param_ratio - 1):+.1f} %",
             _f(r.final_val_loss)] for r in s.placement]
    return _titled(f"{h}Placement study: LoRA on attention only, MLP only and all linear "
                   "layers at matched trainable parameters", ["run", "targets", "r",
                                                               "budget r (all)", "trainable",
                                                               "vs budget", "final val loss"],
                   rows, markdown)


def verdict_lines(verdicts: list[Verdict], h: str = "", markdown: bool = False) -> list[str]:
    """Each verdict: its word and claim, the numbers measured, the reason."""
    lines = ["", f"{h}Verdicts", ""]
    for v in verdicts:
        lead = f"- **{v.word}**: " if markdown else f"[{v.word}] "
        lines.append(f"{lead}{v.claim} ({v.source}).")
        nums = "; ".join(f"{k}: {x}" for k, x in v.measured.items())
        lines.append(f"  measured: {nums}")
        if v.reason:
            lines.append(f"  why: {v.reason}")
    return lines


def study_lines(result: ExperimentResult, h: str = "", markdown: bool = False) -> list[str]:
    """The study's table, its verdicts, its wall time beside its FLOP floor (empty without a
    study)."""
    s = result.study
    if s is None:
        return []
    lines = (_lr_lines if s.name == "lr" else _placement_lines)(s, h, markdown)
    lines += verdict_lines(s.verdicts, h, markdown)
    floor = ("" if s.floor_s is None else
             f"; FLOP floor {s.floor_s:.1f} s (the experiment's, below), "
             f"{s.wall_s / s.floor_s:.1f}x")
    lines += ["", f"study {s.name}: {len(result.runs)} runs, wall time {s.wall_s:.1f} s"
              f"{floor}"]
    return lines
