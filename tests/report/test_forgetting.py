"""loralab.report.forgetting: the forgetting and intruder tables and the verdicts, en and zh
(the zh page shows each verdict's Chinese claim, measured names and reason)."""

from __future__ import annotations

import re
from types import SimpleNamespace

from loralab.experiment.verdicts import forgetting_verdict, intruder_verdict
from loralab.report.forgetting import study_values
from loralab.results.forgetting import Forgetting, ForgettingPoint
from loralab.results.intruders import EPSILON_GRID, IntruderRow, Intruders, LambdaPoint
from loralab.results.verdict import Verdict


def _verdicts() -> tuple[Verdict, Verdict]:
    """Biderman's *partly* (one LoRA run learns less, forgets more) and Shuttleworth's
    *holds*, as the studies build them."""
    full = ForgettingPoint("full", "full", None, 1.0, 2.5, 0.5)
    biderman = forgetting_verdict(Forgetting("English", 3.0, 2.0, [
        full, ForgettingPoint("lora-r2", "lora", 2, 1.2, 2.8, 0.8)]), None)
    rows = [IntruderRow(label, m, r, "attn", 4, list(EPSILON_GRID), [k] * 9, k)
            for label, m, r, k in (("full", "full", None, 0.0), ("lora-r1", "lora", 1, 2.0),
                                   ("lora-r16", "lora", 16, 1.0))]
    sweep = [LambdaPoint("lora-r1", 1.0, 0, 2.0, 3.0, 1.0),
             LambdaPoint("lora-r1", 0.75, 4, 2.01, 2.9, 0.9)]
    shuttleworth = intruder_verdict(Intruders(10, 0.5, ["x"], rows, [], sweep), with_full=True)
    assert biderman is not None
    return biderman, shuttleworth


def _result() -> SimpleNamespace:
    biderman, shuttleworth = _verdicts()
    f = Forgetting("English", 3.0, 2.0, [ForgettingPoint("full", "full", None, 1.0, 2.5, 0.5)],
                   biderman)
    s = Intruders(10, 0.5, ["x"], [IntruderRow("lora-r2-attn", "lora", 2, "attn", 4,
                                               list(EPSILON_GRID), [1.0] * 9, 1.25)], [],
                  [LambdaPoint("lora-r2-attn", 1.0, 0, 1.4, 2.1, 0.1),
                   LambdaPoint("lora-r2-attn", 0.75, 3, 1.5, 2.05, 0.05)],
                  shuttleworth)
    return SimpleNamespace(analysis=SimpleNamespace(forgetting=f, intruders=s))


def test_values_hold_each_number_and_the_verdicts_in_both_languages():
    en = study_values(_result(), "en")
    assert en["forgetting"] == [["full", "1.000", "2.500", "+0.500"]]
    assert en["intruders"] == [["lora-r2-attn", "4", "1.25"]]
    assert en["lambdas"] == [["1", "1.400", "+0.100"], ["0.75", "1.500", "+0.050"]]
    assert [v["word"] for v in en["verdicts"]] == ["partly", "holds"]
    assert "LoRA learns less" in str(en["verdicts"][0]["claim"])
    zh = study_values(_result(), "zh")
    assert [v["word"] for v in zh["verdicts"]] == ["部分成立", "成立"]


def test_the_chinese_page_shows_each_verdict_in_chinese_with_the_same_numbers():
    zh, en = study_values(_result(), "zh")["verdicts"], study_values(_result(), "en")["verdicts"]
    for page, v in zip(zh, _verdicts(), strict=True):
        assert page["claim"] == v.claim_zh and page["reason"] == v.reason_zh
        assert not v.reason or v.reason not in str(page)
        assert page["measured"] == "；".join(f"{k} {x}" for k, x in v.measured_zh.items())
        assert not re.search(r"\b(?:than|runs|forgetting|target|loss|rank|intruders)\b",
                             " ".join([page["claim"], page["measured"], page["reason"]]))
    assert zh[0]["reason"] == "1/1 次 LoRA 运行学得比全参微调少，0/1 次忘得比全参微调少"
    assert en[0]["reason"] == "1/1 LoRA runs learn less and 0/1 forget less than full fine-tuning"
    assert "全参：目标损失 1.000" in zh[0]["measured"]
    assert "full: target loss 1.000" in en[0]["measured"]


def test_a_verdict_without_chinese_shows_its_english_on_the_chinese_page():
    r = _result()
    r.analysis.forgetting.verdict = Verdict("forgetting", "c", "Biderman et al., 2024",
                                            "partly", {"n": "1"}, "why")
    page = study_values(r, "zh")["verdicts"][0]
    assert (page["word"], page["claim"], page["measured"], page["reason"]) == (
        "部分成立", "c", "n 1", "why")


def test_a_result_without_the_studies_shows_none():
    none = study_values(SimpleNamespace(analysis=None), "en")
    assert none["forgetting"] is None and none["intruders"] is None and none["verdicts"] == []
