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

In a learning-rate study (every run at its own rate) both compare each curve (full
fine-tuning, LoRA at each rank) at its best learning rate, as the papers compare methods each
tuned (:func:`compared_runs`); the λ sweep stays on the run with the most intruders.
"""

from __future__ import annotations

from dataclasses import replace

from ..results.finetune import Analysis, RunResult
from ..results.forgetting import Forgetting
from ..results.intruders import Intruders
from ..results.verdict import Verdict, VerdictWord

__all__ = ["compared_runs", "forgetting_verdict", "intruder_verdict", "only_runs", "spearman"]

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


def compared_runs(runs: list[RunResult]) -> set[str] | None:
    """The runs a verdict compares: ``None`` (all) unless the runs carry their own learning
    rates (an lr study); then, per curve (method, rank, target set), the label of the run
    with the least final val loss: each method at its best rate on the grid."""
    if all(r.lr is None for r in runs):
        return None
    best: dict[tuple, RunResult] = {}
    for r in runs:
        key = (r.method, r.rank, r.targets)
        if key not in best or r.final_val_loss < best[key].final_val_loss:
            best[key] = r
    return {r.label for r in best.values()}


def only_runs(study: Forgetting | Intruders, labels: set[str] | None
              ) -> Forgetting | Intruders:
    """``study`` with only the points / rows of ``labels`` (all when ``None``)."""
    if labels is None:
        return study
    if isinstance(study, Forgetting):
        return replace(study, points=[p for p in study.points if p.label in labels])
    return replace(study, rows=[r for r in study.rows if r.label in labels])


def _pair(measured: dict[str, str], en: str, zh: str, value: str,
          measured_zh: dict[str, str], value_zh: str | None = None) -> None:
    """One measured quantity under its English and Chinese names (same value unless
    ``value_zh`` says it in Chinese)."""
    measured[en] = value
    measured_zh[zh] = value if value_zh is None else value_zh


def _compared(en: dict[str, str], zh: dict[str, str], labels: set[str] | None) -> None:
    """Name the runs compared when they are each curve's best rate (:func:`compared_runs`)."""
    if labels is not None:
        _pair(en, "compared: each curve at its best learning rate",
              "比较的运行：每条曲线在其最优学习率处", ", ".join(sorted(labels)), zh)


def forgetting_verdict(study: Forgetting, analysis: Analysis | None,
                       compared: set[str] | None = None) -> Verdict | None:
    """Biderman et al.'s claim on ``study`` (module doc); ``None`` without full fine-tuning
    or a LoRA run. ``compared``: the labels :func:`compared_runs` kept (named in the
    verdict)."""
    full = next((p for p in study.points if p.method == "full"), None)
    lora = [p for p in study.points if p.method in ("lora", "rslora")]
    if full is None or not lora:
        return None
    learns = sum(p.target_val_loss > full.target_val_loss for p in lora)
    forgets = sum(p.forgetting < full.forgetting for p in lora)
    n = len(lora)
    rho = spearman([p.target_val_loss for p in study.points],
                   [p.forgetting for p in study.points])
    en: dict[str, str] = {}
    zh: dict[str, str] = {}
    for e, z, value in (
            ("full: target loss", "全参：目标损失", f"{full.target_val_loss:.3f}"),
            ("full: forgetting", "全参：遗忘", f"{full.forgetting:+.3f}"),
            ("LoRA: target loss", "LoRA：目标损失", f"{min(p.target_val_loss for p in lora):.3f}–"
                                                  f"{max(p.target_val_loss for p in lora):.3f}"),
            ("LoRA: forgetting", "LoRA：遗忘", f"{min(p.forgetting for p in lora):+.3f}–"
                                              f"{max(p.forgetting for p in lora):+.3f}"),
            ("LoRA runs that learn less", "学得更少的 LoRA 运行", f"{learns}/{n}"),
            ("LoRA runs that forget less", "忘得更少的 LoRA 运行", f"{forgets}/{n}"),
            ("rank correlation (target loss, forgetting)", "秩相关（目标损失，遗忘）",
             f"{rho:+.2f}")):
        _pair(en, e, z, value, zh)
    _compared(en, zh, compared)
    spectra = analysis.spectra if analysis is not None else []
    if spectra:
        r90 = sorted(s.rank90 for s in spectra)
        _pair(en, "ΔW_full's median 90%-energy rank", "ΔW_full 的 90% 能量秩（中位数）",
              str(r90[len(r90) // 2]), zh)
    word: VerdictWord
    if learns == n and forgets == n:
        word, reason, reason_zh = "holds", "", ""
    elif learns == n or forgets == n or (2 * learns >= n and 2 * forgets >= n):
        word = "partly"
        reason = (f"{learns}/{n} LoRA runs learn less and {forgets}/{n} forget less than full "
                  "fine-tuning")
        reason_zh = f"{learns}/{n} 次 LoRA 运行学得比全参微调少，{forgets}/{n} 次忘得比全参微调少"
    else:
        word = "does not hold"
        reason = (f"only {learns}/{n} LoRA runs learn less and {forgets}/{n} forget less "
                  "than full fine-tuning")
        reason_zh = (f"只有 {learns}/{n} 次 LoRA 运行学得比全参微调少，{forgets}/{n} 次忘得比"
                     "全参微调少")
    return Verdict(study="forgetting", claim="LoRA learns less and forgets less than full "
                   "fine-tuning, on one learning–forgetting trade-off", source=BIDERMAN,
                   word=word, measured=en, reason=reason,
                   claim_zh="与全参微调相比，LoRA 学得少、忘得少，两者落在同一条学习–遗忘"
                   "权衡曲线上",
                   measured_zh=zh, reason_zh=reason_zh)


# The intruder study's three checks: (English, Chinese) of each, as a failed one is named.
_FULL_FEWER = ("full has fewer than LoRA", "全参微调的入侵维度少于 LoRA")
_LOW_RANK = ("more at low rank", "低秩时更多")
_MITIGATION = ("mitigation lowers forgetting at little cost", "缓解以很小的代价降低了遗忘")


def _mitigation(study: Intruders, en: dict[str, str], zh: dict[str, str]) -> bool | None:
    """The first λ < 1 against λ = 1: its numbers into ``en`` / ``zh``; whether it lowers
    forgetting by more than it raises the target loss (``None``: nothing to judge)."""
    sweep = study.lambda_sweep
    one = sweep[0] if sweep else None
    mit = next((p for p in sweep if p.lam < 1.0), None)
    if one is None or mit is None:
        return None
    lam = f"λ={mit.lam:g}"
    _pair(en, f"{lam} on {one.label}: forgetting", f"{lam}（{one.label}）：遗忘",
          f"{one.forgetting:+.3f} → {mit.forgetting:+.3f}", zh)
    _pair(en, f"{lam}: target loss", f"{lam}：目标损失",
          f"{one.target_val_loss:.3f} → {mit.target_val_loss:.3f}", zh)
    if mit.intruders == 0:                # with nothing scaled the copy is the run itself
        eps = f"ε={study.epsilon:g}"
        _pair(en, lam, lam, f"no intruder at {eps} to scale", zh, f"{eps} 时没有可缩放的入侵维度")
        return None
    gain = one.forgetting - mit.forgetting
    return gain > 0 and mit.target_val_loss - one.target_val_loss < gain


def intruder_verdict(study: Intruders, with_full: bool,
                     compared: set[str] | None = None) -> Verdict:
    """Shuttleworth et al.'s three claims on ``study`` (module doc); ``compared`` as in
    :func:`forgetting_verdict`."""
    every = [r for r in study.rows if r.method == "lora"]
    last = every[-1].targets                       # the ranks compared on one target set
    lora = sorted((r for r in every if r.targets == last), key=lambda r: r.rank or 0)
    full = next((r for r in study.rows if r.method == "full"), None)
    mean_lora = sum(r.at_epsilon for r in every) / len(every)
    eps = f"ε={study.epsilon:g}"
    en: dict[str, str] = {}
    zh: dict[str, str] = {}
    _pair(en, f"intruders per matrix at {eps}, full", f"{eps} 时每个矩阵的入侵维度，全参",
          f"{full.at_epsilon:.2f}" if full else "—", zh)
    for r in [*lora, *(r for r in study.rows if r.method == "rslora")]:
        name = f"{'LoRA' if r.method == 'lora' else 'rsLoRA'} r={r.rank} {r.targets}"
        _pair(en, name, name, f"{r.at_epsilon:.2f}", zh)
    _compared(en, zh, compared)
    checks: dict[tuple[str, str], bool] = {}
    if with_full and full is not None:
        checks[_FULL_FEWER] = full.at_epsilon < mean_lora
    if len(lora) >= 2:
        checks[_LOW_RANK] = lora[0].at_epsilon > lora[-1].at_epsilon
    mitigates = _mitigation(study, en, zh)
    if mitigates is not None:
        checks[_MITIGATION] = mitigates
    bad = [k for k, v in checks.items() if not v]
    word: VerdictWord = ("holds" if checks and not bad else
                         "partly" if len(bad) < len(checks) else "does not hold")
    reason, reason_zh = ("", "") if word == "holds" else (
        ("not here: " + "; ".join(e for e, _ in bad), "此处不成立：" + "；".join(z for _, z in bad))
        if checks else ("nothing to compare", "没有可比较的结果"))
    if all(r.at_epsilon == 0 for r in study.rows):     # nothing rotated: no contest at all
        word, reason = "does not hold", (
            f"no run, full fine-tuning or LoRA, has an intruder at {eps}: every top-"
            f"{study.top_k} singular vector of W stays close to one of W0's, as after a short "
            "run with a small update; the comparison needs longer training")
        reason_zh = (f"没有任何运行（全参微调或 LoRA）在 {eps} 时有入侵维度：W 的前 {study.top_k} "
                     "个奇异向量都与 W0 的某个奇异向量接近，就像更新很小的短训练之后那样；"
                     "这一比较需要更长的训练")
    return Verdict(study="intruders", claim="LoRA's top singular vectors include intruders "
                   "that full fine-tuning's lack, more at low rank; scaling them down reduces "
                   "forgetting at little cost to the task", source=SHUTTLEWORTH, word=word,
                   measured=en, reason=reason,
                   claim_zh="LoRA 的主要奇异向量中有全参微调没有的入侵维度，低秩时更多；"
                   "把它们缩小可以减少遗忘，而对任务的代价很小",
                   measured_zh=zh, reason_zh=reason_zh)
