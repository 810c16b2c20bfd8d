"""The user's own transformers causal LM (``--model PATH_OR_ID``), in loralab's training loop.

:func:`load_causal_lm` takes a local folder (what ``save_pretrained`` writes: ``config.json``,
the weights, the tokenizer files; works offline) or a Hugging Face hub id (``gpt2``,
``owner/name``; online, or offline when it is in the hub cache), and returns
``(HFCausalLM, tokenizer)``. Every bad input is one :class:`~loralab.errors.LoralabError`
naming the value and what is allowed, raised before any weight is read where it can be: a
folder without ``config.json``, weights or tokenizer, a model that is not a causal LM (BERT,
T5, ...), a name neither a folder nor on the hub (offline: "not found locally and the network
is unreachable"), ``revision`` with a local folder; after it, a bad ``config.json``, a
truncated weights file and NaN/Inf weights. The hub is asked once, with a short timeout
(:data:`HUB_TIMEOUT_S`). :func:`hf_token_ids` tokenises documents for
:class:`~loralab.lm.corpus.LMData`; :func:`module_names` lists the short names LoRA can target
(``c_attn, c_proj, c_fc`` for GPT-2, ``q_proj, …, down_proj`` for Llama). transformers is the
optional extra ``hf`` (``pip install "loralab[hf]"``), imported only inside the functions.
"""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from .checkpoint import non_finite
from .hub import HUB_TIMEOUT_S, hub_source

__all__ = ["HF_HINT", "HUB_TIMEOUT_S", "HFCausalLM", "hf_token_ids", "load_causal_lm",
           "hf_shape_fields", "is_linear_like", "module_names"]

HF_HINT = 'pip install "loralab[hf]"'
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                    "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")
_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
_NOT_CAUSAL_HEADS = ("ForMaskedLM", "ForSequenceClassification", "ForTokenClassification",
                     "ForQuestionAnswering", "ForMultipleChoice", "ForPreTraining",
                     "ForNextSentencePrediction", "ForImageClassification", "ForCTC")
_LLAMA_LIKE = set("llama mistral mixtral qwen2 qwen3 gemma gemma2 phi3 olmo olmo2 granite "
                  "cohere stablelm smollm3".split())


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise LoralabError(f"--model needs transformers, which is not installed; {HF_HINT}") \
            from None
    return transformers


class HFCausalLM(nn.Module):
    """A transformers causal LM as loralab's loop wants it: ``forward(idx: (B, T) long) ->
    logits (B, T, V)`` float32 (``hf(input_ids=idx, use_cache=False).logits.float()``).

    The transformers model is ``self.hf``, untouched, so module paths stay the model's own:
    ``hf.transformer.h.0.attn.c_attn`` (GPT-2), ``hf.model.layers.0.self_attn.q_proj``
    (Llama). **LoRA goes on ``wrapper.hf``**: ``inject_lora(wrapper.hf, config)`` with the
    short names of :func:`module_names` as ``target_modules``, train ``wrapper`` (its
    parameters are the HF model's), then ``save_adapter(wrapper.hf, folder)``: the keys are
    then ``base_model.model.transformer.h.0.attn.c_attn.lora_A.weight``, which PEFT loads with
    ``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(...), folder)``. (An
    adapter injected into or saved from the wrapper itself would carry an ``hf.`` prefix that
    PEFT cannot place.) The wrapper's own ``state_dict`` keys are ``hf.<path>`` (loralab's
    checkpoints); it has no ``save_pretrained``.

    Attributes:
        hf: the ``PreTrainedModel``.
        name_or_path: what it was loaded from.
        vocab_size: ``V``, the width of the logits.
        block_size: the longest context (``n_positions`` / ``max_position_embeddings``).
    """

    def __init__(self, hf: nn.Module, name_or_path: str = "") -> None:
        super().__init__()
        self.hf = hf
        self.name_or_path = name_or_path
        head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
        weight = getattr(head, "weight", None)
        self.vocab_size = int(weight.shape[0]) if weight is not None else int(
            hf.config.vocab_size)
        self.block_size = _max_positions(hf.config)
        # the key/value cache's argument: ``cache`` in transformers 5.2x, ``past_key_values``
        # before (read once here, not per decoded token)
        self._cache_arg = ("cache" if "cache" in inspect.signature(hf.forward).parameters
                           else "past_key_values")
        self.train(hf.training)                   # the wrapper's mode is the model's

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx: (B, T)`` token ids, ``T ≤ block_size`` -> logits ``(B, T, V)`` float32."""
        if idx.shape[1] > self.block_size:
            raise LoralabError(f"sequence length {idx.shape[1]} is not allowed; the model's "
                               f"context is {self.block_size} tokens")
        out = self.hf(input_ids=idx, use_cache=False, return_dict=True)
        return out.logits.float()                                      # (B, T, V)

    def decode_step(self, idx: torch.Tensor, past: Any = None) -> tuple[torch.Tensor, Any]:
        """One step of cached decoding: ``idx: (1, T_new)`` the tokens not yet seen (the whole
        prompt at first, then the one token just drawn), ``past`` the key/value cache of the
        tokens before them (``None`` at first) -> (the last position's logits ``(V,)``
        float32, the cache including ``idx``).

        Equal to ``forward(all tokens so far)[0, -1]`` up to float rounding, at the cost of
        the new tokens only: without the cache, each of ``n`` new tokens would run the whole
        context again (and the full-vocabulary head at every position), ``O(n²)`` work.
        """
        total = idx.shape[1] + (0 if past is None else int(past.get_seq_length()))
        if total > self.block_size:
            raise LoralabError(f"sequence length {total} is not allowed; the model's "
                               f"context is {self.block_size} tokens")
        out = self.hf(input_ids=idx, use_cache=True, return_dict=True, logits_to_keep=1,
                      **{self._cache_arg: past})
        cache = getattr(out, "cache", None) or out.past_key_values
        return out.logits[0, -1].float(), cache                        # (V,), the cache


def _max_positions(config: Any) -> int:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 10**9


def _check_folder(folder: Path, name: str, revision: str | None) -> None:
    """A local model folder: no ``revision``; ``config.json``, weights and tokenizer there."""
    if revision is not None:
        raise LoralabError(f"--revision {revision} is not allowed with the local folder "
                           f"{name}; a revision picks a commit of a hub id (owner/name)")
    if not (folder / "config.json").is_file():
        raise LoralabError(f"the model folder {name} has no config.json; --model takes a "
                           "folder written by save_pretrained (config.json, the weights, the "
                           "tokenizer files) or a hub id")
    if not any(any(folder.glob(g)) for g in _WEIGHT_GLOBS):
        raise LoralabError(f"the model folder {name} has no weights (model.safetensors or "
                           "pytorch_model.bin, or their sharded index); save the model with "
                           "save_pretrained")
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        raise LoralabError(f"the model folder {name} has no tokenizer (none of "
                           f"{', '.join(_TOKENIZER_FILES[:3])}, ...); save the model's "
                           "tokenizer there too (tokenizer.save_pretrained(folder))")


def _check_causal(config: Any, name: str) -> None:
    """Refuse a config whose model ``AutoModelForCausalLM`` would not load as a causal LM."""
    from transformers.models.auto import modeling_auto as auto

    causal = auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    classes = {c for v in causal.values() for c in ((v,) if isinstance(v, str) else v)}
    model_type = getattr(config, "model_type", "")
    archs = list(getattr(config, "architectures", None) or [])
    ok = model_type in causal
    if ok and archs and not any(a in classes or a.endswith(("ForCausalLM", "LMHeadModel"))
                                for a in archs):
        ok = not any(a.endswith(_NOT_CAUSAL_HEADS) for a in archs)
    if ok and model_type in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(
            config, "is_decoder", False) and not any(a in classes for a in archs):
        ok = False                          # an encoder (BERT, RoBERTa, ...) saved as such
    if not ok:
        what = ", ".join(archs) or type(config).__name__
        raise LoralabError(f"--model {name} is a {model_type!r} model ({what}), not a causal "
                           "LM; --model takes a decoder that AutoModelForCausalLM loads "
                           "(e.g. gpt2, llama, mistral, qwen2, phi, gemma)")


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())          # one line, at most 300 characters
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _load_config(transformers: Any, source: str, name: str, revision: str | None,
                 local: bool) -> Any:
    try:
        return transformers.AutoConfig.from_pretrained(source, revision=revision,
                                                       local_files_only=local)
    except Exception as exc:  # noqa: BLE001 (transformers and huggingface_hub raise many types:
        msg = _first_line(exc)   # a string where a number belongs is a validation error)
        if re.search(r"model[ _]type|Unrecognized", msg):
            msg = (f"this transformers ({transformers.__version__}) does not know its "
                   f"model_type ({msg})")
        raise LoralabError(f"--model {name}: its config.json could not be read: {msg}") from None


def _dtype_kw(transformers: Any) -> str:
    major, minor = (int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _quantization(transformers: Any, dtype: torch.dtype) -> Any:
    from ..quantizer import bnb

    bnb()                                          # the clear line when it is missing
    return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                           bnb_4bit_compute_dtype=dtype)


def _load_weights(transformers: Any, source: str, name: str, config: Any,
                  kwargs: dict[str, Any]) -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained`` without its progress bar (library code does not
    print); a failure is one line naming the model."""
    log = transformers.utils.logging
    was_enabled = log.is_progress_bar_enabled()
    log.disable_progress_bar()
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(source, config=config, **kwargs)
    except Exception as exc:  # noqa: BLE001 (safetensors, torch and transformers raise many)
        raise LoralabError(f"--model {name}: its weights could not be loaded "
                           f"({_first_line(exc)}); if a file is truncated or corrupt, save or "
                           "download the model again") from None
    finally:
        if was_enabled:
            log.enable_progress_bar()


def load_causal_lm(name_or_path: str, *, revision: str | None = None,
                   dtype: torch.dtype = torch.float32,
                   quantize_4bit: bool = False,
                   cache_dir: str | os.PathLike[str] | None = None) -> tuple[HFCausalLM, Any]:
    """Load a transformers causal LM and its tokenizer: ``(HFCausalLM, tokenizer)``.

    ``name_or_path``: a local folder (offline), a hub id (``revision``: a branch, tag or
    commit, hub ids only), a ``.gguf`` file or a built-in name (``smollm2``; both offline, read
    through the float32 copy that :mod:`loralab.lm.gguf` keeps under ``cache_dir``).
    ``dtype``: the weights' dtype (float32 by default: loralab trains in float32, or under
    ``--bf16`` autocast). ``quantize_4bit``: the linear layers in NF4
    (bitsandbytes, QLoRA's storage; ``pip install "loralab[qlora]"``). The checks run in
    order, each a :class:`LoralabError`: folder/hub id and revision, ``config.json`` (a causal
    LM?), the tokenizer, the weights (readable, finite), the tokenizer's ids within the
    vocabulary. The model comes back in eval mode (the training loop sets train mode).
    """
    transformers = _transformers()
    name = str(name_or_path)
    from .gguf import gguf_source_folder

    folder = gguf_source_folder(name, revision, cache_dir) or Path(name).expanduser()
    if folder.is_dir():
        _check_folder(folder, name, revision)
        source, local = str(folder), True
    elif folder.exists():
        raise LoralabError(f"--model {name} is a file but not a GGUF file; give a .gguf file, "
                           "the folder that holds config.json (what save_pretrained writes), a "
                           "built-in name (smollm2) or a hub id")
    else:
        source, local = name, hub_source(name, revision)
    config = _load_config(transformers, source, name, revision, local)
    _check_causal(config, name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, revision=revision,
                                                               local_files_only=local)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LoralabError(f"--model {name}: its tokenizer could not be loaded "
                           f"({_first_line(exc)}); the folder needs the tokenizer files "
                           "save_pretrained writes (tokenizer.json, tokenizer_config.json)") \
            from None
    kwargs: dict[str, Any] = {"revision": revision, "local_files_only": local,
                              _dtype_kw(transformers): dtype}
    if quantize_4bit:
        kwargs["quantization_config"] = _quantization(transformers, dtype)
    hf = _load_weights(transformers, source, name, config, kwargs)
    bad = non_finite(dict(hf.named_parameters()))   # the file's fault, not the learning rate's
    if bad is not None:
        raise LoralabError(f"--model {name}: its weight {bad[0]!r} holds {bad[1]} NaN/Inf "
                           "values; the model's files are broken (no learning rate can train "
                           "it): save or download the model again")
    if quantize_4bit:
        from ..quantizer import keep_float_compute

        keep_float_compute(hf)          # one float32 path on AVX512-BF16 CPUs too
    wrapper = HFCausalLM(hf, name)
    if len(tokenizer) > wrapper.vocab_size:
        raise LoralabError(f"--model {name}: its tokenizer has {len(tokenizer):,} tokens but "
                           f"the model's vocabulary only {wrapper.vocab_size:,}; save the "
                           "model after resize_token_embeddings")
    return wrapper, tokenizer


def hf_token_ids(tokenizer: Any, docs: list[str]) -> torch.Tensor:
    """``docs`` tokenised without special tokens and joined by the EOS token (or by the ids of
    ``"\\n"`` when the tokenizer has none): a 1-D long tensor, the ``train``/``val`` stream of
    :class:`~loralab.lm.corpus.LMData`. A document boundary is then something the model has
    seen in pretraining, and no window mixes two documents without a separator."""
    if not docs:
        return torch.zeros(0, dtype=torch.long)
    eos = getattr(tokenizer, "eos_token_id", None)
    sep = [int(eos)] if eos is not None else list(
        tokenizer("\n", add_special_tokens=False)["input_ids"])
    if not sep:
        raise LoralabError("the tokenizer has no EOS token and encodes '\\n' to nothing; "
                           "documents could not be separated")
    encoded = tokenizer(list(docs), add_special_tokens=False, verbose=False)["input_ids"]
    ids: list[int] = []
    for i, doc_ids in enumerate(encoded):
        if i:
            ids.extend(sep)
        ids.extend(doc_ids)
    return torch.tensor(ids, dtype=torch.long)


def is_linear_like(mod: nn.Module) -> bool:
    """A leaf ``nn.Linear`` (or subclass: bitsandbytes' too) or transformers' ``Conv1D``."""
    conv1d = type(mod).__name__ == "Conv1D" and hasattr(mod, "nf")   # transformers' GPT-2
    return (isinstance(mod, nn.Linear) or conv1d) and not any(True for _ in mod.children())


def module_names(model: nn.Module, *, include_head: bool = False) -> list[str]:
    """Short names (the last path part) of the linear-like leaf modules of ``model``
    (``nn.Linear`` and its subclasses, transformers' ``Conv1D``), once each, in model order:
    what ``--targets`` may name. The output head (``get_output_embeddings()``, or a module
    called ``lm_head``) is left out unless ``include_head``. GPT-2: ``c_attn, c_proj, c_fc``;
    Llama: ``q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj``; TinyLM:
    ``q_proj, k_proj, v_proj, o_proj, up_proj, down_proj``."""
    inner = model.hf if isinstance(model, HFCausalLM) else model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    names: list[str] = []
    for path, mod in inner.named_modules():
        if not path or not is_linear_like(mod):
            continue
        short = path.rsplit(".", 1)[-1]
        if not include_head and (mod is head or short == "lm_head"):
            continue
        if short not in names:
            names.append(short)
    return names


def _attr(obj: object, *names: str, default: object = None) -> Any:
    return next((v for v in (getattr(obj, n, None) for n in names) if v is not None), default)


def hf_shape_fields(config: Any) -> dict[str, Any]:
    """The fields of :class:`~loralab.lm.memory.ModelShape` read from a transformers config
    (its text part): GPT-2's ``n_embd``/``n_layer``/``n_head``/``n_inner`` or Llama's
    ``hidden_size``/``num_hidden_layers``/…; family ``gpt2``, ``llama`` (Llama-like: Mistral,
    Qwen2, Gemma, Phi-3, ...) or ``generic``."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    kind = getattr(text, "model_type", "")
    family = "gpt2" if kind == "gpt2" else "llama" if kind in _LLAMA_LIKE else "generic"
    d = _attr(text, "hidden_size", "n_embd", "d_model")
    layers = _attr(text, "num_hidden_layers", "n_layer", "num_layers")
    heads = _attr(text, "num_attention_heads", "n_head")
    if d is None or layers is None or heads is None:
        raise LoralabError(f"the config of model_type {kind!r} does not give its width, layers "
                           "and heads (hidden_size/n_embd, ...); pass a ModelShape")
    return {"d_model": int(d), "n_layers": int(layers), "n_heads": int(heads),
            "vocab_size": int(text.vocab_size),
            "d_ff": int(_attr(text, "intermediate_size", "n_inner", "ffn_dim", default=0)),
            "n_kv_heads": int(_attr(text, "num_key_value_heads", default=0)),
            "family": family,
            "positions": int(_attr(text, "n_positions", default=0)) if family == "gpt2" else 0,
            "tied_head": bool(getattr(config, "tie_word_embeddings", True)),
            "gated": family == "llama" or getattr(text, "hidden_act", "") == "silu",
            "attn_dropout": float(_attr(text, "attn_pdrop", "attention_dropout", default=0.0)),
            "eager_attention": getattr(text, "_attn_implementation", None) == "eager"}
