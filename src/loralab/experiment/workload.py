"""What the experiment fine-tunes: the base, its tokenizer, the data and the target sets.

Three sources, one :class:`Workload`:

* the built-in task (default): loralab's tiny LM pretrained on generated English (cached),
  fine-tuned on Pig Latin, characters as tokens;
* ``--data``: the same tiny LM, pretrained on the same English with the byte-level tokenizer
  (one vocabulary for any UTF-8 text, so one cached base serves every text), fine-tuned on
  the user's text (:func:`loralab.lm.textdata.load_text`: its split, its checks);
* ``--model``: a transformers causal LM and its own tokenizer, not pretrained again,
  fine-tuned on ``--data`` (or the Pig Latin lines); the targets are its module names.

Every check (the text, the model's config, the targets, the ranks) runs here, before any
training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from ..lm.checkpoint import tensors_sha256
from ..lm.corpus import LMData, build_data, corpus_lines
from ..lm.model import CharTokenizer
from ..lm.train import evaluate
from ..lora.storage import weight_out_in
from ..results.finetune import BaseInfo
from ..results.finetune_config import QUANT_METHODS, ExperimentConfig, RunOptions
from ..results.presets import parse_targets
from .base import load_or_pretrain_base
from .context import RunContext

__all__ = ["TINY_SOURCE", "Workload", "general_loss", "layer_paths", "load_workload",
           "resolve_targets", "weight_out_in"]


TINY_SOURCE = "the pretraining English (held out)"


@dataclass
class Workload:
    """The base (frozen, eval mode), its tokenizer, the fine-tuning data, the target sets as
    ``[(label, module names)]``, and what the data is (``data_info``)."""

    base: nn.Module
    base_info: BaseInfo
    tokenizer: Any
    ft: LMData
    target_sets: list[tuple[str, tuple[str, ...]]]
    task: str                                      # "pig-latin" or "text"
    data_info: dict = field(default_factory=dict)
    general: LMData | None = None                  # the source domain: what forgetting is
    #                                                measured on (tiny LM: its pretraining
    #                                                English; a real preset: its general text)
    source: str = ""                               # the source domain's name


def layer_paths(model: nn.Module, module: str) -> list[str]:
    """Paths of ``model``'s weight layers whose last name is ``module``, in layer order
    (``blocks.0.attn.q_proj``, ``hf.transformer.h.0.attn.c_attn``, ...)."""
    paths = [n for n, m in model.named_modules() if n.rsplit(".", 1)[-1] == module
             and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim == 2]
    return sorted(paths, key=lambda p: [int(x) if x.isdigit() else -1 for x in p.split(".")])


_HF_ATTN = frozenset({"q_proj", "k_proj", "v_proj", "o_proj"})
_HF_MLP = frozenset({"gate_proj", "up_proj", "down_proj"})


def resolve_targets(texts: tuple[str, ...], model: nn.Module
                    ) -> list[tuple[str, tuple[str, ...]]]:
    """``--targets`` of a transformers model: module names joined by ``+`` or ``,``, each one
    of the model's linear layers (:func:`loralab.lm.hf_model.module_names`), or the sets
    ``attn`` (q/k/v/o_proj), ``mlp`` (gate/up/down_proj) and ``all`` (every linear layer but
    the output head); a set's name is the label when the modules are exactly that set."""
    from ..lm.hf_model import module_names

    names = module_names(model)
    sets = {"attn": [n for n in names if n in _HF_ATTN],
            "mlp": [n for n in names if n in _HF_MLP], "all": names}
    out = []
    for text in texts:
        parts = [p.strip() for p in re.split(r"[+,]", text) if p.strip()]
        items = list(dict.fromkeys(n for p in parts for n in sets.get(p) or [p]))
        bad = [i for i in items if i not in names]
        if not items or bad:
            raise LoralabError(f"target module {(bad or [text])[0]!r} is not allowed for this "
                               f"model; its linear layers are: {', '.join(names)} (or the "
                               "sets attn, mlp, all)")
        label = next((k for k, v in sets.items() if set(v) == set(items)), "+".join(items))
        out.append((label, tuple(items)))
    return list(dict.fromkeys(out))


def _check_ranks(config: ExperimentConfig, model: nn.Module,
                 sets: list[tuple[str, tuple[str, ...]]]) -> None:
    """Every rank ≤ min(d_out, d_in) of every targeted layer."""
    from ..lm.hf_model import is_linear_like

    ranks = (*config.ranks, *(config.rslora_ranks or ()))
    for _, modules in sets:
        for module in modules:
            for path in layer_paths(model, module):
                mod = model.get_submodule(path)
                if is_linear_like(mod) and max(ranks) > min(mod.weight.shape):
                    raise LoralabError(f"rank {max(ranks)} is not allowed on {path} "
                                       f"{tuple(mod.weight.shape)}; ranks must be <= "
                                       f"{min(mod.weight.shape)}")


def _check_quantizable(config: ExperimentConfig, model: nn.Module,
                       sets: list[tuple[str, tuple[str, ...]]]) -> None:
    """``qlora`` / ``loftq`` quantize the targeted layers with bitsandbytes, which stores
    ``nn.Linear`` layers only (not transformers' ``Conv1D``, GPT-2's)."""
    asked = sorted(QUANT_METHODS & set(config.methods))
    if not asked:
        return
    for _, modules in sets:
        for module in modules:
            for path in layer_paths(model, module):
                kind = type(model.get_submodule(path)).__name__
                if kind != "Linear":
                    raise LoralabError(f"methods {', '.join(asked)} are not allowed on {path} "
                                       f"({kind}); bitsandbytes quantizes nn.Linear layers "
                                       "only (e.g. Llama's q_proj, not GPT-2's Conv1D c_attn)")


def _user_text(config: ExperimentConfig):
    from ..lm.textdata import load_text

    return load_text(config.data, seed=config.seed)


def _tiny(config: ExperimentConfig, ctx: RunContext) -> Workload:
    """The tiny LM: Pig Latin with characters, or the user's text with bytes."""
    spec = config.spec
    t = spec.model.block_size
    info: dict = {}
    if config.data is None:
        tok: Any = CharTokenizer()
        ft = build_data("finetune", tok, t, n_train=spec.n_finetune_lines,
                        n_val=spec.n_val_lines, seed=config.seed)
    else:
        from ..lm.bytes import ByteTokenizer
        from ..lm.textdata import corpus_data, token_counts

        tok = ByteTokenizer()
        corpus = _user_text(config)
        ft = corpus_data(corpus, tok, t)
        info = _data_info(corpus, token_counts(ft).summary(corpus.unit), "bytes")
    pre = build_data("pretrain", tok, t, n_train=spec.n_pretrain_lines,
                     n_val=spec.n_val_lines, seed=config.seed)
    base, base_info = load_or_pretrain_base(config, pre, ft, ctx)
    base_info.general_val_loss = general_loss(base, pre, config, ctx)
    sets = [parse_targets(x) for x in config.targets]
    return Workload(base, base_info, tok, ft, sets,
                    "pig-latin" if config.data is None else "text", _with_block(info, ft),
                    general=pre, source=TINY_SOURCE)


def _data_info(corpus: Any, summary: str, tokenizer: str) -> dict:
    return {"name": corpus.name, "unit": corpus.unit, "sha256": corpus.sha256,
            "summary": summary, "tokenizer": tokenizer}


def _with_block(info: dict, ft: LMData) -> dict:
    return {**info, "block_size": ft.block_size} if info else info


def _hf_data(config: ExperimentConfig, options: RunOptions, tok: Any, block: int
             ) -> tuple[LMData, dict]:
    """The user's text (or the Pig Latin lines) in the model's own tokens."""
    from ..lm.textdata import token_counts

    if config.data is not None:
        corpus = _user_text(config)
        train_docs, val_docs = corpus.train_docs, corpus.val_docs
    else:
        spec = config.spec
        train_docs = corpus_lines("finetune", "train", spec.n_finetune_lines, config.seed)
        seen = set(train_docs)
        val_docs = [x for x in corpus_lines("finetune", "val", spec.n_val_lines, config.seed)
                    if x not in seen]
        corpus = None
    train, val, cached = _token_cache(config, options, tok, train_docs, val_docs)
    for what, ids in (("train", train), ("validation", val)):
        if len(ids) < block + 2:
            raise LoralabError(f"the {what} text is {len(ids)} tokens of this model, fewer "
                               f"than one block of {block} + 2; give more text")
    ft = LMData(train, val, block, train_docs, val_docs)
    summary = token_counts(ft).summary(corpus.unit if corpus else "line")
    info = (_data_info(corpus, summary, "the model's") if corpus is not None else
            {"name": "pig-latin", "unit": "line", "summary": summary,
             "tokenizer": "the model's"})
    return ft, {**info, "tokens_cached": cached}


def _token_cache(config: ExperimentConfig, options: RunOptions, tok: Any,
                 train_docs: list[str], val_docs: list[str]
                 ) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The documents in the model's tokens, cached under the cache folder by the SHA-256 of
    the text and of the tokenizer's vocabulary (a rerun does not tokenise again):
    ``(train ids, val ids, read from the cache)``."""
    import hashlib
    import json

    from ..lm.checkpoint import load_weights, save_weights
    from ..lm.hf_model import hf_token_ids
    from .base import base_path

    h = hashlib.sha256()
    for part in (json.dumps(tok.get_vocab(), sort_keys=True), type(tok).__name__,
                 str(getattr(tok, "eos_token_id", None)), "\x00".join(train_docs), "\x01",
                 "\x00".join(val_docs)):
        h.update(part.encode("utf-8"))
    path = base_path(config, options).parent / f"tokens-{h.hexdigest()[:16]}.safetensors"
    if path.is_file():
        tensors, _ = load_weights(path, what="token cache", advice="delete it to tokenise "
                                  "again")
        return tensors["train"], tensors["val"], True
    train, val = hf_token_ids(tok, train_docs), hf_token_ids(tok, val_docs)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(path, {"train": train, "val": val}, {"what": "tokenised text"})
    return train, val, False


def _no_dropout(model: nn.Module) -> None:
    """Dropout off (every ``nn.Dropout`` and attention dropout rate set to 0), as the tiny LM
    has none: every run then sees the same function of the same batches, the same seed gives
    the same numbers, and a resumed run continues exactly."""
    for mod in model.modules():
        if isinstance(mod, nn.Dropout):
            mod.p = 0.0
        if isinstance(getattr(mod, "attention_dropout", None), float):
            mod.attention_dropout = 0.0


def _hf(config: ExperimentConfig, ctx: RunContext) -> Workload:
    """A transformers causal LM: loaded, checked, its val loss on the data measured."""
    from ..lm.hf_model import load_causal_lm

    wrapper, tok = load_causal_lm(config.model, revision=config.revision,
                                  cache_dir=ctx.options.cache_dir)
    _no_dropout(wrapper)
    sets = resolve_targets(config.targets, wrapper.hf)
    _check_ranks(config, wrapper.hf, sets)
    _check_quantizable(config, wrapper.hf, sets)
    block = min(config.spec.model.block_size, wrapper.block_size)
    ft, info = _hf_data(config, ctx.options, tok, block)
    general = _general_data(config, ctx.options, tok, block)
    wrapper.to(ctx.device).requires_grad_(False).eval()
    tc = config.spec.lora                       # the windows every run's val loss is on
    loss = evaluate(wrapper, ft, tc.eval_batch_size, tc.eval_batches, device=ctx.device,
                    dist=ctx.dist)
    base_info = BaseInfo(key=f"hf:{config.model}@{config.revision or 'main'}",
                         path=str(config.model), cached=True,
                         params=sum(p.numel() for p in wrapper.parameters()),
                         pretrain_val_loss=None, finetune_val_loss=loss, pretrain_wall_s=0.0,
                         sha256=tensors_sha256(dict(wrapper.named_parameters())))
    if general is not None:
        base_info.general_val_loss = general_loss(wrapper, general, config, ctx)
        info = {**info, "general": config.spec.real.general}
    return Workload(wrapper, base_info, tok, ft, sets,
                    "pig-latin" if config.data is None else "text", _with_block(info, ft),
                    general=general,
                    source=f"{config.spec.real.general} (held out)" if general else "")


def _general_data(config: ExperimentConfig, options: RunOptions, tok: Any, block: int
                  ) -> LMData | None:
    """A real-model preset's held-out general text (its validation split, in the model's
    tokens): the loss on it before and after a run is what the run forgot."""
    real = config.spec.real
    if real is None:
        return None
    from ..lm.textdata import load_text

    corpus = load_text(real.general, seed=config.seed)
    _, val, _ = _token_cache(config, options, tok, [], corpus.val_docs)
    if len(val) < block + 2:
        raise LoralabError(f"the general text {real.general} is {len(val)} tokens of this "
                           f"model, fewer than one block of {block} + 2")
    return LMData(val[: block + 2], val, block, [], corpus.val_docs)


def general_loss(model: nn.Module, general: LMData, config: ExperimentConfig,
                 ctx: RunContext) -> float:
    """Mean next-token loss on the source domain's fixed val windows (a real-model preset:
    the general text's first ``general_batches``; the tiny LM: every held-out window of its
    pretraining English), the same windows for the base and every run."""
    real = config.spec.real
    batches = real.general_batches if real is not None else None
    return evaluate(model, general, 16, batches, device=ctx.device, dist=ctx.dist,
                    bf16=config.bf16)


def load_workload(config: ExperimentConfig, ctx: RunContext) -> Workload:
    """The :class:`Workload` of ``config`` (module doc), on ``ctx``'s device."""
    if config.model is not None:
        return _hf(config, ctx)
    return _tiny(config, ctx)
