"""The verdicts of the forgetting and intruder studies: each paper's claim, this run's
numbers and one word (:class:`loralab.results.verdict.Verdict`).

* **Biderman et al., 2024**: LoRA learns less (a higher target loss than full fine-tuning)
  and forgets less (a smaller rise of the source loss). *holds*: every LoRA / rsLoRA run does
  both; *partly*: one of the two holds for every run, or both for at least half; else *does
  not hold*. Measured beside: the rank correlation of target loss and forgetting over all runs
  (one trade-off curve: negative) and the full update's median 90 %-energy rank (the paper:
  10–100× usual LoRA ranks).
* **Shuttleworth et al., 2024**: (a) full fine-tuning has fewer intruders than LoRA, (b) LoRA
  has more at its lowest rank than at its highest (on the last target set), (c) scaling them
  by λ (the first λ < 1) lowers forgetting by more than it raises the target loss. *holds*:
  all three; *partly*: one or two; *does not hold*: none.
"""

from __future__ import annotations

from ..results.finetune import Analysis
from ..results.forgetting import Forgetting
from ..results.intruders import Intruders
from ..results.verdict import Verdict, VerdictWord

__all__ = ["forgetting_verdict", "intruder_verdict", "spearman"]

BIDERMAN = "Biderman et al., 2024"
SHUTTLEWORTH = "Shuttleworth et al., 2024"


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank); ``nan`` below 3 points or when
    one side is constant."""
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        out = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    if len(x) < 3:
        return float("nan")
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return sxy / (sxx * syy) ** 0.5 if sxx and syy else float("nan")


def forgetting_verdict(study: Forgetting, analysis: Analysis | None) -> Verdict | None:
    """Biderman et al.'s claim on ``study`` (module doc); ``None`` without full fine-tuning
    or a LoRA run."""
    full = next((p for p in study.points if p.method == "full"), None)
    lora = [p for p in study.points if p.method in ("lora", "rslora")]
    if full is None or not lora:
        return None
    learns = sum(p.target_val_loss > full.target_val_loss for p in lora)
    forgets = sum(p.forgetting < full.forgetting for p in lora)
    n = len(lora)
    rho = spearman([p.target_val_loss for p in study.points],
                   [p.forgetting for p in study.points])
    measured = {"full: target loss": f"{full.target_val_loss:.3f}",
                "full: forgetting": f"{full.forgetting:+.3f}",
                "LoRA: target loss": f"{min(p.target_val_loss for p in lora):.3f}–"
                                     f"{max(p.target_val_loss for p in lora):.3f}",
                "LoRA: forgetting": f"{min(p.forgetting for p in lora):+.3f}–"
                                    f"{max(p.forgetting for p in lora):+.3f}",
                "LoRA runs that learn less": f"{learns}/{n}",
                "LoRA runs that forget less": f"{forgets}/{n}",
                "rank correlation (target loss, forgetting)": f"{rho:+.2f}"}
    spectra = analysis.spectra if analysis is not None else []
    if spectra:
        r90 = sorted(s.rank90 for s in spectra)
        measured["ΔW_full's median 90%-energy rank"] = str(r90[len(r90) // 2])
    word: VerdictWord
    if learns == n and forgets == n:
        word, reason = "holds", ""
    elif learns == n or forgets == n or (2 * learns >= n and 2 * forgets >= n):
        word = "partly"
        reason = (f"{learns}/{n} LoRA runs learn less and {forgets}/{n} forget less than full "
                  "fine-tuning")
    else:
        word = "does not hold"
        reason = (f"only {learns}/{n} LoRA runs learn less and {forgets}/{n} forget less "
                  "than full fine-tuning")
    return Verdict(study="forgetting", claim="LoRA learns less and forgets less than full "
                   "fine-tuning, on one learning–forgetting trade-off", source=BIDERMAN,
                   word=word, measured=measured, reason=reason)


def intruder_verdict(study: Intruders, with_full: bool) -> Verdict:
    """Shuttleworth et al.'s three claims on ``study`` (module doc)."""
    every = [r for r in study.rows if r.method == "lora"]
    last = every[-1].targets                       # the ranks compared on one target set
    lora = sorted((r for r in every if r.targets == last), key=lambda r: r.rank or 0)
    full = next((r for r in study.rows if r.method == "full"), None)
    mean_lora = sum(r.at_epsilon for r in every) / len(every)
    eps = f"ε={study.epsilon:g}"
    measured = {f"intruders per matrix at {eps}, full": f"{full.at_epsilon:.2f}"
                if full else "—"}
    measured |= {f"LoRA r={r.rank} {r.targets}": f"{r.at_epsilon:.2f}" for r in lora}
    measured |= {f"rsLoRA r={r.rank} {r.targets}": f"{r.at_epsilon:.2f}" for r in study.rows
                 if r.method == "rslora"}
    checks: dict[str, bool] = {}
    if with_full and full is not None:
        checks["full has fewer than LoRA"] = full.at_epsilon < mean_lora
    if len(lora) >= 2:
        checks["more at low rank"] = lora[0].at_epsilon > lora[-1].at_epsilon
    sweep = study.lambda_sweep
    one = sweep[0] if sweep else None
    mit = next((p for p in sweep if p.lam < 1.0), None)
    if one is not None and mit is not None:
        cost = mit.target_val_loss - one.target_val_loss
        gain = one.forgetting - mit.forgetting
        measured[f"λ={mit.lam:g} on {one.label}: forgetting"] = (
            f"{one.forgetting:+.3f} → {mit.forgetting:+.3f}")
        measured[f"λ={mit.lam:g}: target loss"] = (
            f"{one.target_val_loss:.3f} → {mit.target_val_loss:.3f}")
        if mit.intruders > 0:             # with nothing scaled the copy is the run itself
            checks["mitigation lowers forgetting at little cost"] = gain > 0 and cost < gain
        else:
            measured[f"λ={mit.lam:g}"] = f"no intruder at ε={study.epsilon:g} to scale"
    ok = [k for k, v in checks.items() if v]
    bad = [k for k, v in checks.items() if not v]
    word: VerdictWord = ("holds" if checks and not bad else
                         "partly" if ok else "does not hold")
    reason = "" if word == "holds" else (
        ("not here: " + "; ".join(bad)) if checks else "nothing to compare")
    if all(r.at_epsilon == 0 for r in study.rows):     # nothing rotated: no contest at all
        word, reason = "does not hold", (
            f"no run, full fine-tuning or LoRA, has an intruder at {eps}: every top-"
            f"{study.top_k} singular vector of W stays close to one of W0's, as after a short "
            "run with a small update; the comparison needs longer training")
    return Verdict(study="intruders", claim="LoRA's top singular vectors include intruders "
                   "that full fine-tuning's lack, more at low rank; scaling them down reduces "
                   "forgetting at little cost to the task", source=SHUTTLEWORTH, word=word,
                   measured=measured, reason=reason)
