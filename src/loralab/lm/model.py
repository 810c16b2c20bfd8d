"""A tiny GPT-style causal language model and a character tokenizer that needs no download.

The model (``TinyLM``) is a decoder-only Transformer in the nanoGPT mould, with the module
names LoRA papers and PEFT target::

    tok_emb (V, d) + pos_emb (T, d)
    n_layers × Block:   x = x + o_proj(attn(q_proj(ln1 x), k_proj(ln1 x), v_proj(ln1 x)))
                        x = x + down_proj(gelu(up_proj(ln2 x)))
    ln_f, lm_head (d -> V)

Pre-LN blocks, causal multi-head self-attention with separate ``q_proj``, ``k_proj``,
``v_proj``, ``o_proj`` (each ``nn.Linear(d, d, bias=False)``, weight ``(d_out, d_in)``), an MLP
``up_proj: (d_ff, d)`` and ``down_proj: (d, d_ff)``. Initialisation is deterministic: every
weight is drawn from a private ``torch.Generator`` seeded by the caller, N(0, 0.02²), with the
residual projections (``o_proj``, ``down_proj``) scaled by ``1/√(2·n_layers)`` as in GPT-2.

The tokenizer (``CharTokenizer``) maps each character of a fixed alphabet to one id, so
pretraining text and fine-tuning text share one vocabulary and no file is ever fetched.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import LoralabError

__all__ = [
    "ALPHABET",
    "ATTN_MODULES",
    "MLP_MODULES",
    "Block",
    "CausalSelfAttention",
    "CharTokenizer",
    "MLP",
    "TinyLM",
    "TinyLMConfig",
    "config_hash",
    "generate",
    "lm_loss",
]

# Every character the tokenizer knows; id = position in this string.
ALPHABET = "\n !\"',-.:;?=>|()0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ATTN_MODULES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES: tuple[str, ...] = ("up_proj", "down_proj")


class CharTokenizer:
    """Character-level tokenizer over :data:`ALPHABET` (``vocab_size = len(ALPHABET)``)."""

    def __init__(self, alphabet: str = ALPHABET) -> None:
        if len(set(alphabet)) != len(alphabet) or not alphabet:
            raise LoralabError("the tokenizer alphabet must be non-empty without repeats")
        self.alphabet = alphabet
        self._ids = {ch: i for i, ch in enumerate(alphabet)}

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids."""
        return len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        """``text`` -> list of ids; a character outside the alphabet raises ``LoralabError``."""
        try:
            return [self._ids[ch] for ch in text]
        except KeyError as exc:
            raise LoralabError(f"character {exc.args[0]!r} is not in the tokenizer's alphabet; "
                               f"allowed: {self.alphabet!r}") from None

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """List or 1-D tensor of ids -> text."""
        seq = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.alphabet[i] for i in seq)


@dataclass(frozen=True)
class TinyLMConfig:
    """Shape of the model.

    Attributes:
        vocab_size: ``V``, number of token ids.
        d_model: ``d``, the residual width.
        n_layers: number of Transformer blocks.
        n_heads: attention heads; ``d_model`` must be a multiple of it.
        d_ff: MLP hidden width (``4·d`` when 0).
        block_size: ``T_max``, the longest context (learned position embeddings).
    """

    vocab_size: int = len(ALPHABET)
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 0
    block_size: int = 64

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LoralabError(f"{name}={value!r} is not allowed; it must be an integer >= 1")
        if isinstance(self.d_ff, bool) or not isinstance(self.d_ff, int) or self.d_ff < 0:
            raise LoralabError(f"d_ff={self.d_ff!r} is not allowed; it must be an integer >= 0 "
                               "(0 means 4·d_model)")
        if self.d_model % self.n_heads:
            raise LoralabError(f"d_model={self.d_model} is not a multiple of "
                               f"n_heads={self.n_heads}")
        if self.d_ff == 0:
            object.__setattr__(self, "d_ff", 4 * self.d_model)

    def to_dict(self) -> dict:
        """Plain dict of the fields."""
        return asdict(self)


def config_hash(*parts: object) -> str:
    """A short stable hash (12 hex digits) of JSON-able parts, used as a cache key."""
    from ..fileio import to_jsonable

    text = json.dumps(to_jsonable(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: ``softmax(Q Kᵀ/√d_h + causal mask) V`` per head."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        d = config.d_model
        self.n_heads = config.n_heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, T, d)`` -> ``(B, T, d)``."""
        b, t, d = x.shape
        h = self.n_heads
        # (B, T, d) -> (B, T, h, d/h) -> (B, h, T, d/h)
        q = self.q_proj(x).view(b, t, h, d // h).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, d // h).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, d // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, T, d/h)
        y = y.transpose(1, 2).reshape(b, t, d)                        # (B, T, d)
        return self.o_proj(y)


class MLP(nn.Module):
    """``down_proj(gelu(up_proj x))``: ``(B, T, d) -> (B, T, d_ff) -> (B, T, d)``."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        self.up_proj = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.down_proj = nn.Linear(config.d_ff, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x)))


class Block(nn.Module):
    """Pre-LN Transformer block: ``x + attn(ln1 x)``, then ``x + mlp(ln2 x)``."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """The causal LM. ``forward(idx: (B, T) long) -> logits (B, T, V)``.

    ``seed`` fixes the initial weights exactly (a private generator, the global RNG is not
    touched), so two models built with the same config and seed are identical.

    ``gradient_checkpointing`` (off by default; :meth:`gradient_checkpointing_enable`): in
    training mode with autograd on, each block's activations are not kept for backward but
    recomputed from the block's input (one more forward per block, same numbers).
    """

    gradient_checkpointing: bool = False

    def __init__(self, config: TinyLMConfig, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        # The default initialisers draw from the global RNG; fork it so it is left as it was
        # (every weight is then drawn again by reset_parameters from a private generator).
        with torch.random.fork_rng(devices=[]):
            self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
            self.pos_emb = nn.Embedding(config.block_size, config.d_model)
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
            self.ln_f = nn.LayerNorm(config.d_model)
            self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.reset_parameters(seed)

    def gradient_checkpointing_enable(self, enable: bool = True) -> None:
        """Turn gradient (activation) checkpointing per block on (or off with ``False``):
        ``torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)``, which also
        trains LoRA factors when the embeddings (the blocks' inputs) are frozen."""
        self.gradient_checkpointing = bool(enable)

    def gradient_checkpointing_disable(self) -> None:
        """Keep every activation for backward again (the default)."""
        self.gradient_checkpointing = False

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Deterministic GPT-2 init: N(0, 0.02²); residual projections N(0, (0.02/√(2L))²);
        LayerNorm weight 1, bias 0."""
        gen = torch.Generator().manual_seed(seed)
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")):
                p.fill_(1.0)
            elif name.endswith(".bias") or name == "ln_f.bias":
                p.zero_()
            else:
                std = resid_std if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                p.copy_(torch.randn(p.shape, generator=gen) * std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx: (B, T)`` token ids, ``T ≤ block_size`` -> logits ``(B, T, V)``."""
        t = idx.shape[1]
        if t > self.config.block_size:
            raise LoralabError(f"sequence length {t} is not allowed; the model's block_size "
                               f"is {self.config.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)                      # (B, T, d)
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        return self.lm_head(self.ln_f(x))                              # (B, T, V)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, *,
            reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy in nats. ``logits: (B, T, V)``, ``targets: (B, T)``;
    positions whose target is ``-1`` are ignored. ``reduction="sum"`` gives the sum."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                           ignore_index=-1, reduction=reduction)


@torch.no_grad()
def generate(model: nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int, *,
             temperature: float = 0.0, seed: int = 0, stop: str | None = "\n") -> str:
    """Continue ``prompt`` by ``max_new_tokens`` tokens; return only the continuation.
    ``tokenizer``: anything with ``encode(text) -> ids`` and ``decode(ids) -> text``
    (:class:`CharTokenizer`, the byte tokenizer, a transformers tokenizer).

    ``temperature=0`` is greedy; otherwise sample from ``softmax(logits/temperature)`` with a
    private generator seeded by ``seed``. Generation stops early after ``stop`` is produced.
    Generation also stops at the tokenizer's EOS token (a transformers tokenizer's
    ``eos_token_id``), which is kept in the output.
    The context is cropped to the model's ``block_size``. The model's train/eval mode is
    restored afterwards. A model with a ``decode_step`` (a transformers model,
    :meth:`~loralab.lm.hf_model.HFCausalLM.decode_step`) decodes with its key/value cache
    while the context fits: each new token costs one position, not the whole context again.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    block = getattr(model, "block_size", None) or getattr(
        getattr(model, "config", None), "block_size", 10**9)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)
    out: list[int] = []
    step = getattr(model, "decode_step", None)
    past, fresh = None, ids
    try:
        for _ in range(max_new_tokens):
            if step is not None and ids.shape[1] <= block:
                logits, past = step(fresh, past)                       # (V,), the cache
                logits = logits.cpu()
            else:
                logits = model(ids[:, -block:])[0, -1].float().cpu()    # (V,)
            if temperature <= 0:
                nxt = int(logits.argmax())
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=gen))
            out.append(nxt)
            fresh = torch.tensor([[nxt]], device=device)
            ids = torch.cat([ids, fresh], dim=1)
            if nxt == getattr(tokenizer, "eos_token_id", None) or (
                    stop is not None and tokenizer.decode([nxt]) == stop):
                break
    finally:
        model.train(was_training)
    return tokenizer.decode(out)
