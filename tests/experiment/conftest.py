"""Fixtures of the experiment tests: a small random Llama saved as a user's model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


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
