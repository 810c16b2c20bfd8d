"""The studies on the report page: table, verdicts (word, claim, measured names and reason in
the page's language, the numbers the same), figures with translated labels, and a folder
without a study refused in one line."""

from __future__ import annotations

import json
import re

import pytest

from loralab.errors import LoralabError
from loralab.experiment.studies import lr_curves, lr_verdicts, placement_verdict
from loralab.report.studies import read_study_results, study_figures, study_values
from loralab.report.text import t
from loralab.results import ExperimentResult, RunResult, result_from_dict
from loralab.results.study import PlacementRow, StudyResult
from loralab.results.verdict import VERDICT_WORDS_ZH
from tests.plots.conftest import results_json


def _run(method: str, rank: int | None, lr: float, loss: float) -> RunResult:
    return RunResult(label=f"{method}-{rank}-lr{lr:g}", method=method, rank=rank,
                     targets="attn+mlp", modules=[], rslora=False, scaling=None,
                     trainable_params=10, total_params=100, final_val_loss=loss,
                     step_time_s=0.1, tokens_per_s=1.0, flops_per_s=1.0, mfu=0.5,
                     optimizer_state_bytes=0, peak_memory_bytes=0, peak_memory_kind="",
                     wall_s=1.0, lr=lr)


@pytest.fixture
def studies() -> list[ExperimentResult]:
    lr = result_from_dict(results_json())
    lr.runs = [_run("full", None, g, v) for g, v in ((1e-4, 2.0), (1e-3, 1.5), (1e-2, 2.5))]
    lr.runs += [_run("lora", 4, g, v) for g, v in ((1e-4, 3.0), (1e-3, 2.0), (1e-2, 1.7))]
    lr.runs += [_run("lora", 16, g, v) for g, v in ((1e-4, 3.1), (1e-3, 1.9), (1e-2, 1.8))]
    curves = lr_curves(lr.runs)
    verdicts, ratios = lr_verdicts(curves)
    lr.study = StudyResult(name="lr", curves=curves, verdicts=verdicts, ratios=ratios,
                           floor_s=1.0, wall_s=4.0)
    pl = result_from_dict(results_json())
    rows = [PlacementRow("full", "all weights", None, None, 1000, None, 1.5),
            PlacementRow("a", "attn", 9, 4, 72, 1.0, 1.9),
            PlacementRow("m", "mlp", 7, 4, 70, 0.97, 1.7),
            PlacementRow("x", "attn+mlp", 4, 4, 72, 1.0, 1.6)]
    pl.study = StudyResult(name="placement", placement=rows,
                           verdicts=[placement_verdict(rows)], wall_s=2.0)
    return [lr, pl]


def test_every_verdict_claim_has_its_sentence_in_both_languages(studies) -> None:
    verdicts = [v for r in studies for v in r.study.verdicts]
    assert len({v.claim for v in verdicts}) == 3                    # ratio, rank, placement
    for v in verdicts:
        assert v.claim and re.search(r"[\u4e00-\u9fff]", v.claim_zh)


def test_the_chinese_page_says_each_verdict_in_chinese(studies) -> None:
    """Claim, measured names and reason as the verdict wrote them in Chinese, each value the
    English one; no English reason left on the page."""
    rows = [PlacementRow("a", "attn", 9, 4, 72, 1.0, 1.6),              # attention only wins
            PlacementRow("m", "mlp", 7, 4, 70, 0.97, 1.7),
            PlacementRow("x", "attn+mlp", 4, 4, 72, 1.0, 1.65)]
    studies[1].study.verdicts.append(placement_verdict(rows))
    verdicts = [v for r in studies for v in r.study.verdicts]
    assert [v.word for v in verdicts] == ["partly", "partly", "holds", "does not hold"]
    shown = [x for page in study_values(studies, "zh") for x in page["verdicts"]]
    for page, v in zip(shown, verdicts, strict=True):
        assert (page["claim"], page["reason"]) == (v.claim_zh, v.reason_zh)
        assert page["measured"] == "；".join(f"{k}：{x}" for k, x in v.measured_zh.items())
        assert list(v.measured_zh.values()) == list(v.measured.values())
        assert not v.reason or v.reason not in str(page)
        assert not any(k in page["measured"] for k in v.measured if k not in v.measured_zh)
    en = [x for page in study_values(studies, "en") for x in page["verdicts"]]
    assert [(x["claim"], x["reason"]) for x in en] == [(v.claim, v.reason) for v in verdicts]
    assert "预算 r=4（72 个参数）：attn 1.900, mlp 1.700, attn+mlp 1.600" in shown[2]["measured"]
    heads = [h for page in study_values(studies, "zh") for h in page["head"]]
    assert not [h for h in heads if re.search(r"[A-Za-z]{2,}", h)]       # r and rates only


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_values_show_the_table_and_each_verdict(studies, lang: str) -> None:
    values = study_values(studies, lang)
    assert [v["title"] for v in values] == [t("st_title_lr", lang),
                                            t("st_title_placement", lang)]
    lr = values[0]
    assert lr["rows"][0][:4] == ["full", "2.000", "1.500", "2.500"]
    assert lr["rows"][1][-3] == "0.01*"                        # LoRA's best at the edge
    words = [v["word"] for v in lr["verdicts"]]
    expect = [v.word for v in studies[0].study.verdicts]
    assert words == ([VERDICT_WORDS_ZH[w] for w in expect] if lang == "zh" else expect)
    assert values[1]["verdicts"][0]["ok"] is True
    assert "4.0" in lr["time"] and "1.0" in lr["time"]


def test_figures_one_per_study_and_pngs(studies) -> None:
    figs = study_figures(studies, "en", None)
    assert len(figs) == 2 and all(png.startswith(b"\x89PNG") for png, _ in figs)
    assert [cap for _, cap in figs] == [t("st_cap_lr", "en"), t("st_cap_placement", "en")]


def test_every_study_figure_label_is_translated(studies) -> None:
    from matplotlib.text import Text

    from loralab.plots.report import localize_figure
    from loralab.plots.studies import lr_figure, placement_figure
    from loralab.report.figure_zh import FIGURE_ZH

    left = set()
    for fig in (lr_figure(studies[0].study), placement_figure(studies[1].study)):
        localize_figure(fig, FIGURE_ZH, "DejaVu Sans")
        for text in fig.findobj(Text):
            s = text.get_text()
            if set(re.findall(r"[A-Za-z]{3,}", s)) - {"LoRA", "MLP"}:
                left.add(s)
    assert not left, f"labels without a Chinese translation: {sorted(left)}"


def test_a_folder_without_a_study_is_refused(tmp_path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(results_json()))
    with pytest.raises(LoralabError, match="holds no study"):
        read_study_results((str(tmp_path),))
