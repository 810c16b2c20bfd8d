"""The studies' verdicts: each word from hand-made numbers, each said in Chinese too with the
same numbers; Spearman against numpy."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from loralab.experiment.verdicts import forgetting_verdict, intruder_verdict, spearman
from loralab.results.forgetting import Forgetting, ForgettingPoint
from loralab.results.intruders import EPSILON_GRID, IntruderRow, Intruders, LambdaPoint


def test_spearman_matches_numpy_ranks():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=12), rng.normal(size=12)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    assert spearman(list(x), list(y)) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


def _forgetting(lora: list[tuple[float, float]]) -> Forgetting:
    pts = [ForgettingPoint("full", "full", None, 1.0, 3.0, 1.0)]
    pts += [ForgettingPoint(f"lora-r{i}", "lora", i, t, 2.0 + f, f)
            for i, (t, f) in enumerate(lora, 1)]
    return Forgetting("src", 2.0, 2.0, pts)


@pytest.mark.parametrize("lora, word", [
    ([(1.5, 0.2), (1.2, 0.5)], "holds"),          # every LoRA run learns less, forgets less
    ([(1.5, 1.2), (1.2, 1.5)], "partly"),         # learns less, forgets more
    ([(0.9, 1.2), (0.8, 1.5)], "does not hold"),  # learns more, forgets more
])
def test_forgetting_verdict_words(lora, word, bilingual):
    v = forgetting_verdict(_forgetting(lora), None)
    assert v.word == word and (word == "holds" or v.reason)
    bilingual(v)


def test_forgetting_verdict_with_the_full_updates_rank_in_both_languages(bilingual):
    analysis = SimpleNamespace(spectra=[SimpleNamespace(rank90=k) for k in (3, 12, 7)])
    v = forgetting_verdict(_forgetting([(0.9, 1.2), (1.2, 0.5)]), analysis)
    assert v.measured["ΔW_full's median 90%-energy rank"] == "7"
    assert list(v.measured_zh.values()) == list(v.measured.values())
    assert v.word == "partly" and v.reason_zh.startswith("1/2 次 LoRA")
    bilingual(v)


def _intruders(full: float, low: float, high: float, gain: float) -> Intruders:
    rows = [IntruderRow(label, m, r, "attn", 4, list(EPSILON_GRID), [k] * 9, k)
            for label, m, r, k in (("full", "full", None, full), ("lora-r1", "lora", 1, low),
                                   ("lora-r16", "lora", 16, high))]
    sweep = [LambdaPoint("lora-r1", 1.0, 0, 2.0, 3.0, 1.0),
             LambdaPoint("lora-r1", 0.75, 4, 2.01, 3.0 - gain, 1.0 - gain)]
    return Intruders(10, 0.5, ["x"], rows, [], sweep)


@pytest.mark.parametrize("args, word", [
    ((0.0, 2.0, 1.0, 0.1), "holds"),
    ((0.0, 1.0, 2.0, 0.1), "partly"),             # fewer at low rank
    ((3.0, 1.0, 2.0, -0.1), "does not hold"),     # full has more; mitigation forgets more
])
def test_intruder_verdict_words(args, word, bilingual):
    v = intruder_verdict(_intruders(*args), with_full=True)
    assert v.word == word and (word == "holds" or v.reason)
    bilingual(v)


def test_each_failed_intruder_check_is_named_in_both_languages(bilingual):
    v = intruder_verdict(_intruders(3.0, 1.0, 2.0, -0.1), with_full=True)
    assert v.reason.count(";") == v.reason_zh.count("；") == 2
    assert "全参微调的入侵维度少于 LoRA" in v.reason_zh and "低秩时更多" in v.reason_zh
    v = intruder_verdict(_intruders(3.0, 2.0, 1.0, 0.1), with_full=False)   # no full: 2 checks
    assert v.word == "holds" and v.reason == v.reason_zh == ""
    bilingual(v)


def test_a_sweep_that_scaled_nothing_is_no_evidence(bilingual):
    study = _intruders(0.0, 0.0, 0.0, 1e-6)                 # no intruder, float noise only
    study.lambda_sweep[1].intruders = 0
    v = intruder_verdict(study, with_full=True)
    assert v.word == "does not hold" and "mitigation" not in v.reason
    bilingual(v)
    study = _intruders(0.0, 2.0, 1.0, 1e-6)                 # a λ that scaled nothing, said so
    study.lambda_sweep[1].intruders = 0
    v = intruder_verdict(study, with_full=True)
    assert v.measured["λ=0.75"] == "no intruder at ε=0.5 to scale"
    assert v.measured_zh["λ=0.75"] == "ε=0.5 时没有可缩放的入侵维度"
    bilingual(v)


def test_no_intruder_in_any_run_says_so_instead_of_blaming_a_comparison(bilingual):
    study = _intruders(0.0, 0.0, 0.0, 0.0)
    study.lambda_sweep[1].intruders = 0
    v = intruder_verdict(study, with_full=True)
    assert v.word == "does not hold"
    assert "no run" in v.reason and "ε=0.5" in v.reason and "full has fewer" not in v.reason
    assert "ε=0.5" in v.reason_zh and "前 10 个奇异向量" in v.reason_zh
    bilingual(v)


def test_an_lr_study_compares_each_curve_at_its_best_rate(bilingual):
    """Full at 1e-4 and 1e-2, LoRA at both: mixing rates would pair LoRA's best (1e-2) with
    full's worst; the verdict takes each curve's best run, and names them."""
    from test_studies import _run as run

    from loralab.experiment.verdicts import compared_runs, only_runs

    runs = [run("full", None, 1e-4, 1.0), run("full", None, 1e-2, 4.0),
            run("lora", 4, 1e-4, 3.0), run("lora", 4, 1e-2, 1.5)]
    labels = compared_runs(runs)
    assert labels == {"full-None-0.0001", "lora-4-0.01"}
    assert compared_runs([replace_lr(r) for r in runs]) is None
    forgetting = {"full-None-0.0001": 0.5, "full-None-0.01": 9.0,
                  "lora-4-0.0001": 0.1, "lora-4-0.01": 0.3}
    pts = [ForgettingPoint(r.label, r.method, r.rank, r.final_val_loss,
                           2.0 + forgetting[r.label], forgetting[r.label]) for r in runs]
    study = Forgetting("src", 5.0, 2.0, pts)
    kept = only_runs(study, labels)
    assert [p.label for p in kept.points] == ["full-None-0.0001", "lora-4-0.01"]
    v = forgetting_verdict(kept, None, labels)
    assert v.word == "holds"           # at their bests: LoRA 1.5 > 1.0, forgets 0.3 < 0.5
    assert v.measured["compared: each curve at its best learning rate"] == \
        "full-None-0.0001, lora-4-0.01"
    bilingual(v)


def replace_lr(r):
    from dataclasses import replace

    return replace(r, lr=None)
