"""loralab.results.verdict: a claim, what was measured, one word, and why."""

import pytest

from loralab.errors import LoralabError
from loralab.results.verdict import VERDICT_WORDS, VERDICT_WORDS_ZH, Verdict, verdict_from_dict


def test_words_are_closed_and_translated():
    assert set(VERDICT_WORDS) == {"holds", "partly", "does not hold"}
    assert set(VERDICT_WORDS_ZH) == set(VERDICT_WORDS)


def test_unknown_word_is_refused():
    with pytest.raises(LoralabError, match="'maybe' is not one of"):
        Verdict("lr", "c", "s", "maybe")


@pytest.mark.parametrize("word", ["partly", "does not hold"])
def test_a_verdict_short_of_holds_needs_a_reason(word):
    with pytest.raises(LoralabError, match="needs a reason"):
        Verdict("lr", "c", "s", word)
    assert Verdict("lr", "c", "s", word, reason="too few steps").reason == "too few steps"


def test_round_trip_and_line():
    v = Verdict("lr", "LoRA's best LR is ~10x full's", "Schulman 2025", "partly",
                {"ratio": "4.0x"}, reason="grid too coarse")
    assert verdict_from_dict(v.to_dict()) == v
    assert v.line() == ("lr: partly. LoRA's best LR is ~10x full's (Schulman 2025). "
                        "ratio 4.0x; grid too coarse")


def test_malformed_dict_is_one_line():
    with pytest.raises(LoralabError, match="malformed"):
        verdict_from_dict({"study": "lr"})


def _bilingual() -> Verdict:
    return Verdict("lr", "LoRA's best moves", "Schulman 2025", "partly",
                   {"spread max/min": "3.10x", "ranks": "1, 4"}, "it moves 3.1x",
                   claim_zh="最优学习率会移动",
                   measured_zh={"最大/最小之比": "3.10x", "秩": "1, 4"},
                   reason_zh="相差 3.1 倍")


def test_the_chinese_round_trips_and_texts_pick_the_language():
    v = _bilingual()
    assert verdict_from_dict(v.to_dict()) == v
    en, zh = v.texts("en"), v.texts("zh")
    assert (en.word, en.claim, en.measured, en.reason) == (
        "partly", v.claim, v.measured, v.reason)
    assert (zh.word, zh.claim, zh.reason) == ("部分成立", "最优学习率会移动", "相差 3.1 倍")
    assert list(zh.measured.items()) == [("最大/最小之比", "3.10x"), ("秩", "1, 4")]
    assert v.line() == ("lr: partly. LoRA's best moves (Schulman 2025). spread max/min 3.10x, "
                        "ranks 1, 4; it moves 3.1x")                # the console: English only


def test_an_older_dict_without_the_chinese_loads_and_shows_the_english():
    d = _bilingual().to_dict()
    for key in ("claim_zh", "measured_zh", "reason_zh"):
        del d[key]
    v = verdict_from_dict(d)
    assert (v.claim_zh, v.measured_zh, v.reason_zh) == ("", {}, "")
    zh = v.texts("zh")
    assert (zh.word, zh.claim, zh.measured, zh.reason) == (
        "部分成立", v.claim, v.measured, v.reason)


def test_chinese_that_does_not_match_the_english_is_refused():
    d = _bilingual().to_dict()
    with pytest.raises(LoralabError, match="1 Chinese measured names for 2 quantities"):
        verdict_from_dict({**d, "measured_zh": {"秩": "1, 4"}})
    with pytest.raises(LoralabError, match="a reason in one language only"):
        verdict_from_dict({**d, "reason_zh": ""})
