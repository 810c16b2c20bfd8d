"""loralab.report.forgetting: the forgetting and intruder tables and the verdicts, en and zh."""

from __future__ import annotations

from types import SimpleNamespace

from loralab.report.forgetting import study_values
from loralab.results.forgetting import Forgetting, ForgettingPoint
from loralab.results.intruders import EPSILON_GRID, IntruderRow, Intruders, LambdaPoint
from loralab.results.verdict import Verdict


def _result() -> SimpleNamespace:
    f = Forgetting("English", 3.0, 2.0, [ForgettingPoint("full", "full", None, 1.0, 2.5, 0.5)],
                   Verdict("forgetting", "c", "Biderman et al., 2024", "partly", {"n": "1"},
                           "why"))
    s = Intruders(10, 0.5, ["x"], [IntruderRow("lora-r2-attn", "lora", 2, "attn", 4,
                                               list(EPSILON_GRID), [1.0] * 9, 1.25)], [],
                  [LambdaPoint("lora-r2-attn", 1.0, 0, 1.4, 2.1, 0.1),
                   LambdaPoint("lora-r2-attn", 0.75, 3, 1.5, 2.05, 0.05)],
                  Verdict("intruders", "c", "Shuttleworth et al., 2024", "holds"))
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


def test_a_result_without_the_studies_shows_none():
    none = study_values(SimpleNamespace(analysis=None), "en")
    assert none["forgetting"] is None and none["intruders"] is None and none["verdicts"] == []
