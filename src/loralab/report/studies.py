"""The fine-tuning chapter's studies: each study's table, figure and verdicts (7.5).

A study's folder (``loralab finetune --study NAME --out DIR``) is shown by ``loralab report
--finetune DIR`` (with the rest of that run) or beside any chapter by ``--study DIR``
(repeatable; :func:`read_study_results`). Each verdict is shown in the page's language: its
word, claim, measured names and reason as the study wrote them in that language
(:meth:`~loralab.results.verdict.Verdict.texts`), the numbers the same in both.
"""

from __future__ import annotations

from ..errors import LoralabError
from ..plots.studies import lr_figure, placement_figure
from ..results import ExperimentResult
from ..results.verdict import Verdict
from .figure_zh import localized_png as _png
from .methods import read_finetune_result
from .text import t

__all__ = ["read_study_results", "study_figures", "study_values"]


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
    w = v.texts(lang)
    colon, sep = ("：", "；") if lang == "zh" else (": ", "; ")
    return {"word": w.word, "ok": v.word == "holds", "claim": w.claim, "source": v.source,
            "measured": sep.join(f"{k}{colon}{x}" for k, x in w.measured.items()),
            "reason": w.reason}


def _rows(result: ExperimentResult, lang: str) -> tuple[list[str], list[list[str]]]:
    s = result.study
    assert s is not None
    if s.name == "lr":
        grid = sorted({lr for c in s.curves for lr in c.lrs})
        rows = [[c.label, *(f"{dict(zip(c.lrs, c.val_loss, strict=True)).get(lr, float('nan')):.3f}"
                            for lr in grid),
                 f"{c.best_lr:g}{'*' if c.at_edge else ''}", f"{c.best_lr_fit:.2g}",
                 "1" if c.method == "full" else f"{s.ratios.get(c.label, float('nan')):.1f}"]
                for c in s.curves]
        return [t("ft_run", lang), *(f"{lr:g}" for lr in grid), t("st_best", lang),
                t("st_fit", lang), t("st_vs_full", lang)], rows
    rows = [[r.label, r.targets, "—" if r.rank is None else str(r.rank),
             f"{r.trainable_params:,}",
             "—" if r.param_ratio is None else f"{100 * (r.param_ratio - 1):+.1f} %",
             f"{r.final_val_loss:.3f}"] for r in s.placement]
    return [t("ft_run", lang), t("st_targets", lang), "r", t("st_trainable", lang),
            t("st_vs_budget", lang), t("st_val_loss", lang)], rows


def study_values(results: list[ExperimentResult], lang: str) -> list[dict]:
    """One entry per study for the chapter's template: its title, table, verdicts, time."""
    out = []
    for result in results:
        s = result.study
        if s is None:
            continue
        head, rows = _rows(result, lang)
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
