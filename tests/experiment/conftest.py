"""Fixtures of the experiment tests: a small random Llama saved as a user's model, and the
check that a verdict says in Chinese what it says in English, with the same numbers."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from loralab.results.verdict import Verdict

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")
_CJK = re.compile(r"[\u4e00-\u9fff]")
# English words a Chinese text may keep: method names, target sets and run labels' parts.
_KEPT = {"LoRA", "rsLoRA", "MLP", "lora", "rslora", "full", "attn", "mlp", "all"}


def _numbers(text: str) -> list[str]:
    return sorted(_NUMBER.findall(text))


def _english_words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z]{3,}", text)) - _KEPT


def _check_bilingual(v: Verdict) -> None:
    """``v``'s claim, measured names and reason in Chinese: Chinese text with no English
    word but names, the same quantities in the same order with the same values (a value in
    words: the same numbers), and a reason exactly when the English has one, with the same
    numbers."""
    assert _CJK.search(v.claim_zh) and not _english_words(v.claim_zh), v.claim_zh
    assert len(v.measured_zh) == len(v.measured) > 0
    for (en, x), (zh, y) in zip(v.measured.items(), v.measured_zh.items(), strict=True):
        assert _numbers(zh) == _numbers(en) and not _english_words(zh), (en, zh)
        assert x == y or (_CJK.search(y) and _numbers(x) == _numbers(y)), (x, y)
        assert _CJK.search(zh) or zh == en, (en, zh)       # a run's name stays as it is
    assert bool(v.reason) == bool(v.reason_zh), (v.reason, v.reason_zh)
    if v.reason:
        assert _CJK.search(v.reason_zh) and not _english_words(v.reason_zh), v.reason_zh
        assert _numbers(v.reason_zh) == _numbers(v.reason), (v.reason, v.reason_zh)


@pytest.fixture(scope="session")
def llama6(tmp_path_factory) -> tuple[Path, Path]:
    """A random 6-block Llama (hidden 32) saved with a byte-level tokenizer, and a text."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    root = tmp_path_factory.mktemp("llama6")
    lines = [f"the {w} sat on the mat number {i}." for i in range(600)
             for w in ("cat", "dog")][:900]
    (root / "text.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=300, max_position_embeddings=64, bos_token_id=0,
        eos_token_id=0))
    model.save_pretrained(root / "model")
    fast.save_pretrained(root / "model")
    return root / "model", root / "text.txt"


@pytest.fixture
def bilingual() -> Callable[[Verdict], None]:
    """Checks a verdict's Chinese against its English (:func:`_check_bilingual`)."""
    return _check_bilingual
