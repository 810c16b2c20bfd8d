"""Tables of the forgetting and intruder studies, and their verdicts (:mod:`.tables` joins
them to the rest)."""

from __future__ import annotations

from ..results.finetune import Analysis
from ..results.intruders import Intruders
from ..results.verdict import Verdict
from .textable import _f, _titled

__all__ = ["study_lines", "verdict_lines"]

_SHOWN_EPS = (0.3, 0.5, 0.7, 0.9)     # of EPSILON_GRID: the columns of the counts table


def _intruder_lines(s: Intruders, h: str, markdown: bool) -> list[str]:
    """Intruders per matrix per run (mean) at a few ε and at the settings' ε."""
    shown = [e for e in _SHOWN_EPS if e in s.rows[0].epsilons] if s.rows else []
    extra = s.epsilon not in shown              # the settings' ε, when not a column already
    rows = [[r.label, str(r.matrices), *(f"{r.mean_counts[r.epsilons.index(e)]:.2f}"
                                         for e in shown), *([f"{r.at_epsilon:.2f}"] * extra)]
            for r in s.rows]
    where = ", ".join(s.layers) if len(s.layers) <= 8 else (
        f"{len(s.layers)} matrices: {s.layers[0]} … {s.layers[-1]}")
    lines = _titled(f"{h}Intruder dimensions: of the top {s.top_k} singular vectors of W = W0 "
                    f"+ ΔW, those whose best |cos| against W0's is below ε (mean per matrix; "
                    f"analysed: {where})",
                    ["run", "matrices", *(f"ε={e:g}" for e in shown),
                     *([f"ε={s.epsilon:g}"] * extra)],
                    rows, markdown)
    if s.lambda_sweep:
        base = s.lambda_sweep[0]
        sweep = [[f"{p.lam:g}", str(p.intruders) if p.lam < 1 else "—",
                  _f(p.target_val_loss), f"{p.target_val_loss - base.target_val_loss:+.3f}",
                  _f(p.source_val_loss), f"{p.forgetting:+.3f}"] for p in s.lambda_sweep]
        lines += _titled(f"{h}Mitigation on {base.label}: its intruder directions scaled by λ "
                         f"(top {s.top_k}, ε={s.epsilon:g}; λ = 1: as trained)",
                         ["λ", "directions scaled", "target val loss", "vs λ=1",
                          "source val loss", "forgetting"], sweep, markdown)
    return lines


def verdict_lines(verdicts: list[Verdict], h: str, markdown: bool) -> list[str]:
    """``study: word`` then the claim, the numbers and the reason, one block per verdict."""
    if not verdicts:
        return []
    lines = ["", f"{h}Verdicts: the papers' claims, measured here", ""]
    for v in verdicts:
        lead = f"- **{v.study}: {v.word}.**" if markdown else f"{v.study}: {v.word}."
        lines.append(f"{lead} {v.claim} ({v.source}).")
        nums = "; ".join(f"{k} {val}" for k, val in v.measured.items())
        pad = "  " if markdown else "    "
        lines.append(f"{pad}measured: {nums}")
        if v.reason:
            lines.append(f"{pad}why: {v.reason}")
    return lines


def study_lines(a: Analysis, h: str, markdown: bool) -> list[str]:
    """The intruder tables and the verdicts of both studies (the forgetting table itself is
    :func:`loralab.experiment.tables._forgetting_lines`, beside the runs)."""
    lines = _intruder_lines(a.intruders, h, markdown) if a.intruders is not None else []
    verdicts = [s.verdict for s in (a.forgetting, a.intruders)
                if s is not None and s.verdict is not None]
    return lines + verdict_lines(verdicts, h, markdown)
