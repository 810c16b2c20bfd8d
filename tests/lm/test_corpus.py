"""The generated corpora: the Pig Latin rule, held-out splits, deterministic batches."""

from __future__ import annotations

import random

import pytest
import torch

from loralab.errors import LoralabError
from loralab.lm.corpus import (
    build_data,
    corpus_lines,
    english_words,
    from_pig_latin,
    pig_latin_word_rate,
    sentence,
    to_pig_latin,
)
from loralab.lm.model import CharTokenizer


@pytest.mark.parametrize("english, pig", [
    ("cat", "atcay"), ("small", "allsmay"), ("apple", "appleway"), ("queen", "eenquay"),
    ("the", "ethay"), ("a", "away"), ("an", "anway"), ("brown", "ownbray"),
    ("the small cat.", "ethay allsmay atcay."),
])
def test_pig_latin_rule(english: str, pig: str) -> None:
    assert to_pig_latin(english) == pig


def test_pig_latin_reads_back_and_never_collides_with_english() -> None:
    rng = random.Random(0)
    for _ in range(200):
        s = sentence(rng)
        assert from_pig_latin(to_pig_latin(s)) == s
    words = english_words()
    pig = {to_pig_latin(w) for w in words}
    assert len(pig) == len(words) and not pig & words
    assert from_pig_latin("ethay ogday xyz.") == "the dog ?xyz."


def test_word_rate_scores_pig_latin_one_and_english_zero() -> None:
    rng = random.Random(1)
    line = " ".join(sentence(rng) for _ in range(3))
    assert pig_latin_word_rate(to_pig_latin(line)) == 1.0
    assert pig_latin_word_rate(line) == 0.0
    assert pig_latin_word_rate("ethay xx") == 0.5
    assert pig_latin_word_rate("") == 0.0


def test_tasks_differ_and_validation_is_held_out() -> None:
    tok = CharTokenizer()
    data = build_data("finetune", tok, 16, n_train=300, n_val=100, seed=3)
    assert not set(data.val_lines) & set(data.train_lines)
    assert all(pig_latin_word_rate(line) == 1.0 for line in data.val_lines[:20])
    english = corpus_lines("pretrain", "train", 50, seed=3)
    assert all(pig_latin_word_rate(line) == 0.0 for line in english)
    assert tok.decode(data.val[:30]) == ("\n".join(data.val_lines) + "\n")[:30]


def test_batches_are_a_pure_function_of_seed_and_step() -> None:
    data = build_data("pretrain", CharTokenizer(), 12, n_train=200, n_val=50)
    x1, y1 = data.batch(5, 4, seed=0)
    x2, y2 = data.batch(5, 4, seed=0)
    x3, _ = data.batch(6, 4, seed=0)
    assert x1.shape == y1.shape == (4, 12) and x1.dtype == torch.long
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert torch.equal(x1[:, 1:], y1[:, :-1])            # targets are inputs shifted by one


def test_val_batches_tile_the_val_stream() -> None:
    data = build_data("pretrain", CharTokenizer(), 10, n_train=200, n_val=40)
    batches = data.val_batches(7)
    xs = torch.cat([x for x, _ in batches])
    n = (len(data.val) - 1) // 10
    assert xs.shape == (n, 10)
    assert torch.equal(xs.flatten(), data.val[:n * 10])
    assert len(data.val_batches(7, max_batches=2)) == 2


def test_bad_arguments() -> None:
    with pytest.raises(LoralabError, match="task 'poetry' is not allowed"):
        corpus_lines("poetry", "train", 3)  # type: ignore[arg-type]
    with pytest.raises(LoralabError, match="n_train=0 is not allowed"):
        build_data("pretrain", CharTokenizer(), 8, n_train=0, n_val=5)
    with pytest.raises(LoralabError, match="too small for block_size"):
        build_data("pretrain", CharTokenizer(), 4000, n_train=5, n_val=5)
