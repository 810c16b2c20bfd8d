"""TinyLM and its tokenizer: shapes, causality, an independent attention oracle, determinism."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from loralab.errors import LoralabError
from loralab.lm.model import (
    ALPHABET,
    ATTN_MODULES,
    MLP_MODULES,
    CharTokenizer,
    TinyLM,
    TinyLMConfig,
    config_hash,
    generate,
    lm_loss,
)

SMALL = TinyLMConfig(d_model=32, n_layers=2, n_heads=4, block_size=16)


def test_tokenizer_round_trip_and_unknown_character() -> None:
    tok = CharTokenizer()
    text = "the small cat sees a red ball.\nethay allsmay atcay!"
    ids = tok.encode(text)
    assert tok.vocab_size == len(ALPHABET) == len(set(ALPHABET))
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids)) == text
    with pytest.raises(LoralabError, match="'é' is not in the tokenizer's alphabet"):
        tok.encode("café")


@pytest.mark.parametrize("kwargs, message", [
    ({"d_model": 30, "n_heads": 4}, "not a multiple of n_heads"),
    ({"n_layers": 0}, "n_layers=0 is not allowed"),
    ({"d_ff": -1}, "d_ff=-1 is not allowed"),
    ({"block_size": 2.5}, "block_size=2.5 is not allowed"),
])
def test_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(LoralabError, match=message):
        TinyLMConfig(**kwargs)


def test_d_ff_defaults_to_four_times_width() -> None:
    assert TinyLMConfig(d_model=48, n_heads=4).d_ff == 192


def test_module_names_and_shapes_follow_the_lora_convention() -> None:
    model = TinyLM(SMALL)
    d, f = SMALL.d_model, SMALL.d_ff
    for i in range(SMALL.n_layers):
        for name in ATTN_MODULES:
            lin = model.get_submodule(f"blocks.{i}.attn.{name}")
            assert isinstance(lin, nn.Linear) and lin.weight.shape == (d, d)
        assert model.get_submodule(f"blocks.{i}.mlp.up_proj").weight.shape == (f, d)
        assert model.get_submodule(f"blocks.{i}.mlp.down_proj").weight.shape == (d, f)
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert names == set(ATTN_MODULES + MLP_MODULES) | {"lm_head"}


def test_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b, c = TinyLM(SMALL, seed=3), TinyLM(SMALL, seed=3), TinyLM(SMALL, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(),
                               strict=True):
        assert torch.equal(pa, pb), n
        if not n.endswith(("ln1.weight", "ln2.weight", "ln_f.weight", ".bias")):
            assert not torch.equal(pa, pc), n
    # GPT-2 scale: residual projections have std 0.02/sqrt(2L).
    big = TinyLM(TinyLMConfig(d_model=128, n_layers=4, n_heads=4))
    assert big.blocks[0].attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert big.blocks[0].mlp.down_proj.weight.std().item() == pytest.approx(
        0.02 / math.sqrt(8), rel=0.05)


def test_forward_shape_and_block_size_limit() -> None:
    model = TinyLM(SMALL)
    idx = torch.randint(0, SMALL.vocab_size, (3, SMALL.block_size))
    assert model(idx).shape == (3, SMALL.block_size, SMALL.vocab_size)
    with pytest.raises(LoralabError, match="sequence length 17 is not allowed"):
        model(torch.zeros(1, SMALL.block_size + 1, dtype=torch.long))


def test_causality_future_tokens_do_not_change_past_logits() -> None:
    model = TinyLM(SMALL, seed=1).eval()
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, SMALL.vocab_size, (2, 12), generator=gen)
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 5) % SMALL.vocab_size
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def _reference_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """Textbook multi-head causal attention written out with an explicit mask."""
    b, t, d = x.shape
    h = attn.n_heads
    q = (x @ attn.q_proj.weight.T).view(b, t, h, d // h).permute(0, 2, 1, 3)
    k = (x @ attn.k_proj.weight.T).view(b, t, h, d // h).permute(0, 2, 1, 3)
    v = (x @ attn.v_proj.weight.T).view(b, t, h, d // h).permute(0, 2, 1, 3)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    weights = scores.masked_fill(mask, float("-inf")).softmax(-1)
    y = (weights @ v).permute(0, 2, 1, 3).reshape(b, t, d)
    return y @ attn.o_proj.weight.T


def test_attention_matches_textbook_formula() -> None:
    model = TinyLM(SMALL, seed=2)
    x = torch.randn(2, 10, SMALL.d_model, generator=torch.Generator().manual_seed(1))
    attn = model.blocks[0].attn
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _reference_attention(attn, x), atol=1e-6, rtol=1e-5)


def test_lm_loss_is_mean_negative_log_likelihood_ignoring_minus_one() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=gen)
    targets = torch.randint(0, 7, (2, 5), generator=gen)
    targets[0, 0] = -1
    logp = F.log_softmax(logits, -1)
    keep = targets >= 0
    nll = -logp[keep].gather(-1, targets[keep].unsqueeze(-1)).squeeze(-1)
    assert lm_loss(logits, targets).item() == pytest.approx(nll.mean().item(), rel=1e-6)
    assert lm_loss(logits, targets, reduction="sum").item() == pytest.approx(
        nll.sum().item(), rel=1e-6)


def test_uniform_model_has_loss_log_vocab() -> None:
    model = TinyLM(SMALL)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    idx = torch.randint(0, SMALL.vocab_size, (2, 8))
    assert lm_loss(model(idx), idx).item() == pytest.approx(math.log(SMALL.vocab_size), rel=1e-6)


def test_generate_is_deterministic_stops_at_newline_and_restores_mode() -> None:
    tok = CharTokenizer()
    model = TinyLM(SMALL, seed=5).train()
    out1 = generate(model, tok, "the ", 40)
    out2 = generate(model, tok, "the ", 40)
    assert out1 == out2 and len(out1) <= 40
    assert "\n" not in out1[:-1]
    assert model.training
    s1 = generate(model, tok, "a", 30, temperature=1.0, seed=7, stop=None)
    s2 = generate(model, tok, "a", 30, temperature=1.0, seed=7, stop=None)
    assert s1 == s2 and len(s1) == 30
    # Greedy = argmax of the model's own next-token logits.
    with torch.no_grad():
        logits = model.eval()(torch.tensor([tok.encode("the ")]))[0, -1]
    assert out1[0] == ALPHABET[int(logits.argmax())]


def test_config_hash_is_stable_and_sensitive() -> None:
    assert config_hash(SMALL, 1) == config_hash(TinyLMConfig(d_model=32, n_layers=2, n_heads=4,
                                                             block_size=16), 1)
    assert config_hash(SMALL, 1) != config_hash(SMALL, 2)
    assert len(config_hash(SMALL)) == 12
