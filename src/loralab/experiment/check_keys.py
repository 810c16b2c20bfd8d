"""An adapter's tensors against a base, without loading anything: keys, ranks, vocabulary, ties.

For a PEFT-format adapter (its :class:`~loralab.lora.AdapterConfig` and its tensors) and a
transformers model, :func:`analyse_keys` says, without changing the model:

* every key **used** (the base has the module and the shape), **unused** (no such module, a
  module the config does not select, another shape) or **missing** (the config selects the
  module, the file has no tensor for it), with shape and dtype, and the NaN/Inf count;
* rank r, α and scale ``s = α/r`` (``α/√r`` with rsLoRA) of every LoRA module, the layer
  indices touched, the ``modules_to_save``;
* every saved embedding (a full ``embed_tokens`` / ``lm_head`` weight) with its vocabulary
  size, and the resize the base needs when that size is not the base's;
* whether the base ties its input and output embeddings and whether the adapter keeps them
  tied (LoRA on one of them, or a saved copy of one, or two saved copies that differ, do not);
* whether the init rewrites the base (PiSSA, OLoRA, LoftQ: ``init_lora_weights`` in the config)
  and so needs converting before the adapter is right on an unmodified base.

An adapter none of whose keys the base can use is not a finding but bad input
(:class:`~loralab.errors.LoralabError`, naming the first key and why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import LoralabError
from ..lora import AdapterConfig
from ..lora.keys import PREFIX, parse_lora_key
from ..lora.loading import expected_keys
from ..results.check import Finding, KeyRow, ModuleRow

__all__ = ["KeyAnalysis", "analyse_keys", "embedding_paths"]

_LAYER = re.compile(r"\.(\d+)\.")
# the key suffixes under an embedding's path that hold a vocabulary, and the axis it is on
_VOCAB_AXIS = {"weight": 0, "base_layer.weight": 0, "lora_embedding_A": 1}


@dataclass
class KeyAnalysis:
    """What :func:`analyse_keys` found (the parts of a
    :class:`~loralab.results.check.CheckReport` that need no forward pass)."""

    keys: list[KeyRow] = field(default_factory=list)
    modules: list[ModuleRow] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    base_vocab: int = 0
    saved_embeddings: dict[str, int] = field(default_factory=dict)
    base_tied: bool = False
    ties_kept: bool = True
    findings: list[Finding] = field(default_factory=list)

    @property
    def loadable(self) -> bool:
        """No finding that stops the adapter from loading as it is (keys, shapes, values)."""
        return not any(f.kind in ("non-finite", "unused-key", "missing-key", "vocab-size")
                       for f in self.findings)


def embedding_paths(model: nn.Module) -> tuple[str | None, str | None]:
    """The module paths of the input and the output embedding (``None`` when absent)."""
    ins = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    outs = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {id(m): n for n, m in model.named_modules()}
    return names.get(id(ins)), names.get(id(outs))


def _layer(path: str) -> int | None:
    m = _LAYER.search(f".{path}.")
    return int(m.group(1)) if m else None


def _why_unused(model: nn.Module, key: str) -> str:
    parsed = parse_lora_key(key)
    modules = dict(model.named_modules())
    if parsed is None:
        return "matches no saved module or bias of the base"
    path = parsed[0]
    if path in modules:
        return f"the config's target_modules does not select module {path!r}"
    return f"the base has no module {path!r}"


def _key_rows(model: nn.Module, tensors: dict[str, torch.Tensor],
              expected: dict[str, tuple[int, ...]], required: set[str]) -> list[KeyRow]:
    rows: list[KeyRow] = []
    for key, t in sorted(tensors.items()):
        shape = tuple(t.shape)
        bad = int((~torch.isfinite(t)).sum()) if t.is_floating_point() else 0
        dtype = str(t.dtype).removeprefix("torch.")
        want = expected.get(key)
        if want == shape:
            rows.append(KeyRow(key, "used", shape, dtype, want, bad))
        elif want is not None:
            rows.append(KeyRow(key, "unused", shape, dtype, want, bad,
                               f"shape {shape}, the base expects {want}"))
        else:
            rows.append(KeyRow(key, "unused", shape, dtype, None, bad, _why_unused(model, key)))
    for key in sorted(required - set(tensors)):
        rows.append(KeyRow(key, "missing", None, None, expected[key], 0,
                           "the config selects this module; without it the module keeps its "
                           "initial value"))
    return rows


def _vocab(model: nn.Module, tensors: dict[str, torch.Tensor], out: KeyAnalysis) -> set[str]:
    """Saved embeddings and their vocabulary sizes; a size not the base's is a finding.
    Returns the keys of another size (their finding says why they do not fit)."""
    in_path, out_path = embedding_paths(model)
    out.base_vocab = int(model.get_input_embeddings().weight.shape[0])
    other: dict[int, str] = {}
    odd: set[str] = set()
    for key, t in sorted(tensors.items()):
        rest = key.removeprefix(PREFIX)
        for path in (p for p in (in_path, out_path) if p):
            suffix = rest[len(path) + 1:] if rest.startswith(f"{path}.") else None
            axis = _VOCAB_AXIS.get(suffix or "")
            if suffix == "lora_B.weight" and path == out_path:
                axis = 0
            if axis is None or t.ndim != 2:
                continue
            size = int(t.shape[axis])
            if suffix in ("weight", "base_layer.weight"):
                out.saved_embeddings[key] = size
            if size != out.base_vocab:
                other.setdefault(size, key)
                odd.add(key)
    for size, key in other.items():
        out.findings.append(Finding("vocab-size", (
            f"{key} holds a vocabulary of {size:,} tokens, the base's is {out.base_vocab:,}: "
            f"resize the base first, model.resize_token_embeddings({size}), and use the "
            "tokenizer the adapter was trained with")))
    return odd


def _ties(model: nn.Module, tensors: dict[str, torch.Tensor], targets: list[str],
          saved: list[str], out: KeyAnalysis) -> None:
    ins = model.get_input_embeddings()
    outs = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out.base_tied = outs is not None and ins.weight is getattr(outs, "weight", None)
    if not out.base_tied:
        return
    pair = embedding_paths(model)
    why = ""
    lora_on = [p for p in pair if p in targets]
    kept = [p for p in pair if p in saved]
    if lora_on:
        other = pair[1] if lora_on[0] == pair[0] else pair[0]
        why = (f"LoRA on {lora_on[0]!r}, whose weight the base shares with {other!r}: merged, "
               "the update lands in both")
    elif len(kept) == 1:
        other = pair[1] if kept[0] == pair[0] else pair[0]
        why = (f"the adapter saves {kept[0]!r} (modules_to_save) but not {other!r}, which the "
               "base ties to it: a merged model saved with tie_word_embeddings keeps one weight "
               "for both (transformers 5 keeps both and warns; a loader that honours the flag "
               "does not)")
    elif len(kept) == 2:
        a, b = (tensors.get(f"{PREFIX}{p}.weight") for p in pair)
        if a is not None and b is not None and (a.shape != b.shape or not torch.equal(a, b)):
            why = (f"the adapter saves {pair[0]!r} and {pair[1]!r} with different values, but "
                   "the base ties them: a merged model saved with tie_word_embeddings keeps one")
    if why:
        out.ties_kept = False
        out.findings.append(Finding("ties-broken", why))


def _module_rows(config: AdapterConfig, targets: list[str]) -> list[ModuleRow]:
    rows = []
    for path in targets:
        r, alpha = config.rank_for(path), config.alpha_for(path)
        scale = alpha / (r ** 0.5 if config.use_rslora else r)
        rows.append(ModuleRow(path, _layer(path), r, float(alpha), float(scale)))
    return rows


def _key_findings(rows: list[KeyRow], explained: set[str]) -> list[Finding]:
    out = []
    bad = [k for k in rows if k.non_finite]
    if bad:
        total = sum(k.non_finite for k in bad)
        out.append(Finding("non-finite", f"{len(bad)} key(s) hold {total:,} NaN/Inf entries, "
                                         f"first {bad[0].key} ({bad[0].non_finite:,})"))
    for status, kind in (("unused", "unused-key"), ("missing", "missing-key")):
        some = [k for k in rows if k.status == status and k.key not in explained]
        if some:
            out.append(Finding(kind, f"{len(some)} key(s) {status}, first {some[0].key}: "  # type: ignore[arg-type]
                                     f"{some[0].why}"))
    return out


def analyse_keys(model: nn.Module, config: AdapterConfig, tensors: dict[str, torch.Tensor]
                 ) -> KeyAnalysis:
    """Check ``tensors`` (an adapter file) with ``config`` against ``model`` (a transformers
    model, unchanged). Raises :class:`LoralabError` when the base cannot use any of the keys
    (it is not the adapter's base), naming the first key and why."""
    try:
        targets, saved, expected, required = expected_keys(model, config)
    except LoralabError as exc:
        first = min(tensors, default="(none)")
        raise LoralabError(f"the base does not match the adapter: its first key {first!r} has "
                           f"no module there ({exc})") from None
    out = KeyAnalysis(saved=saved)
    out.keys = _key_rows(model, tensors, expected, required)
    if tensors and not any(k.status == "used" for k in out.keys):
        first = next(k for k in out.keys if k.status == "unused")
        raise LoralabError(f"the base does not match the adapter at all: no key of it fits, the "
                           f"first, {first.key!r}: {first.why}")
    out.modules = _module_rows(config, targets)
    odd = _vocab(model, tensors, out)
    out.findings = _key_findings(out.keys, odd) + out.findings
    _ties(model, tensors, targets, saved, out)
    return out
