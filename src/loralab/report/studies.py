"""The fine-tuning chapter's studies: each study's table, figure and verdicts (7.5).

A study's folder (``loralab finetune --study NAME --out DIR``) is shown by ``loralab report
--finetune DIR`` (with the rest of that run) or beside any chapter by ``--study DIR``
(repeatable; :func:`read_study_results`). The verdict's word and the claim are the page's
language (the claim by :data:`CLAIM_KEYS`, the catalogue's sentence); the numbers and the
reason stay as the study wrote them.
"""

from __future__ import annotations

from ..errors import LoralabError
from ..plots.studies import lr_figure, placement_figure
from ..results import ExperimentResult
from ..results.verdict import VERDICT_WORDS_ZH, Verdict
from .figure_zh import localized_png as _png
from .methods import read_finetune_result
from .text import t

__all__ = ["CLAIM_KEYS", "read_study_results", "study_figures", "study_values"]

CLAIM_KEYS: dict[str, str] = {
    "LoRA's best learning rate is about 10x full fine-tuning's": "st_claim_ratio",
    "LoRA's best learning rate barely depends on the rank (alpha fixed, scale alpha/r)":
        "st_claim_rank",
    "at equal trainable parameters, LoRA on all layers and on the MLP does at least as well "
    "as attention only": "st_claim_placement",
}


def _claim(key: str, lang: str) -> str:
    """The catalogue's sentence of a claim (each key named here, for the catalogue test)."""
    return {"st_claim_ratio": lambda: t("st_claim_ratio", lang),
            "st_claim_rank": lambda: t("st_claim_rank", lang),
            "st_claim_placement": lambda: t("st_claim_placement", lang)}[key]()


def _title(name: str, lang: str) -> str:
    return t("st_title_lr", lang) if name == "lr" else t("st_title_placement", lang)


def _caption(name: str, lang: str) -> str:
    return t("st_cap_lr", lang) if name == "lr" else t("st_cap_placement", lang)


def read_study_results(folders: tuple[str, ...]) -> list[ExperimentResult]:
    """Each folder's result (:func:`~.methods.read_finetune_result`), which must hold a
    study; one clear line otherwise."""
    out = []
    for folder in folders:
        result = read_finetune_result(folder)
        if result.study is None:
            raise LoralabError(f"--study {folder!r} holds no study; give the --out folder of "
                               "'loralab finetune --study lr' or '--study placement'")
        out.append(result)
    return out


def _verdict(v: Verdict, lang: str) -> dict:
    key = CLAIM_KEYS.get(v.claim)
    return {"word": VERDICT_WORDS_ZH[v.word] if lang == "zh" else v.word,
            "ok": v.word == "holds", "claim": _claim(key, lang) if key else v.claim,
            "source": v.source,
            "measured": "; ".join(f"{k}: {x}" for k, x in v.measured.items()),
            "reason": v.reason}


def _rows(result: ExperimentResult) -> tuple[list[str], list[list[str]]]:
    s = result.study
    assert s is not None
    if s.name == "lr":
        grid = sorted({lr for c in s.curves for lr in c.lrs})
        rows = [[c.label, *(f"{dict(zip(c.lrs, c.val_loss, strict=True)).get(lr, float('nan')):.3f}"
                            for lr in grid),
                 f"{c.best_lr:g}{'*' if c.at_edge else ''}", f"{c.best_lr_fit:.2g}",
                 "1" if c.method == "full" else f"{s.ratios.get(c.label, float('nan')):.1f}"]
                for c in s.curves]
        return ["run", *(f"{lr:g}" for lr in grid), "best", "fit", "÷ full"], rows
    rows = [[r.label, r.targets, "—" if r.rank is None else str(r.rank),
             f"{r.trainable_params:,}",
             "—" if r.param_ratio is None else f"{100 * (r.param_ratio - 1):+.1f} %",
             f"{r.final_val_loss:.3f}"] for r in s.placement]
    return ["run", "targets", "r", "trainable", "vs budget", "val loss"], rows


def study_values(results: list[ExperimentResult], lang: str) -> list[dict]:
    """One entry per study for the chapter's template: its title, table, verdicts, time."""
    out = []
    for result in results:
        s = result.study
        if s is None:
            continue
        head, rows = _rows(result)
        floor = "—" if s.floor_s is None else f"{s.floor_s:.1f}"
        out.append({"title": _title(s.name, lang), "head": head, "rows": rows,
                    "verdicts": [_verdict(v, lang) for v in s.verdicts],
                    "time": t("st_time", lang, runs=len(result.runs), wall=f"{s.wall_s:.1f}",
                              floor=floor, preset=result.config.preset)})
    return out


def study_figures(results: list[ExperimentResult], lang: str, font: str | None
                  ) -> list[tuple[bytes, str]]:
    """Each study's figure with its caption."""
    out = []
    for result in results:
        s = result.study
        if s is None:
            continue
        draw = lr_figure if s.name == "lr" else placement_figure
        out.append((_png(draw(s), font), _caption(s.name, lang)))
    return out
