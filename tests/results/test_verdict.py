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
