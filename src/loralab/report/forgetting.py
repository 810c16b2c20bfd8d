"""The fine-tuning chapter's two studies: learning against forgetting (Biderman et al., 2024)
and intruder dimensions with the λ mitigation (Shuttleworth et al., 2024), from an
:class:`ExperimentResult` that measured them, with their verdicts (claim, numbers, one word,
in the page's language). The page shows their tables and verdicts; their figures are
``forgetting.png`` and ``intruders.png`` in the finetune's ``--out``."""

from __future__ import annotations

from ..results import ExperimentResult
from ..results.verdict import Verdict

__all__ = ["study_values"]


def _verdict(v: Verdict, lang: str) -> dict:
    """The verdict in the page's language (:meth:`Verdict.texts`), its numbers as written."""
    w = v.texts(lang)
    sep = "；" if lang == "zh" else "; "
    return {"word": w.word, "claim": w.claim, "source": v.source,
            "measured": sep.join(f"{k} {val}" for k, val in w.measured.items()),
            "reason": w.reason}


def study_values(result: ExperimentResult, lang: str) -> dict:
    """``{"forgetting": rows or None, "intruders": rows or None, "lambdas": rows or None,
    "verdicts": [...]}`` for the chapter's template."""
    a = result.analysis
    f = getattr(a, "forgetting", None)
    s = getattr(a, "intruders", None)
    rows = [[p.label, f"{p.target_val_loss:.3f}", f"{p.source_val_loss:.3f}",
             f"{p.forgetting:+.3f}"] for p in f.points] if f is not None else None
    irows = [[r.label, str(r.matrices), f"{r.at_epsilon:.2f}"] for r in s.rows] \
        if s is not None else None
    lam = [[f"{p.lam:g}", f"{p.target_val_loss:.3f}", f"{p.forgetting:+.3f}"]
           for p in s.lambda_sweep] if s is not None and s.lambda_sweep else None
    verdicts = [_verdict(x.verdict, lang) for x in (f, s)
                if x is not None and x.verdict is not None]
    return {"forgetting": rows, "source": f.source if f is not None else "",
            "intruders": irows, "eps": f"{s.epsilon:g}" if s is not None else "",
            "top_k": s.top_k if s is not None else 0,
            "lam_run": s.lambda_sweep[0].label if lam else "", "lambdas": lam,
            "verdicts": verdicts}
