"""The logits of one sample text at each stage of an adapter's life, against what was trained.

``z_ref`` is the base with the adapter loaded and not merged (``load_adapter``: what
training computed). Each stage is one number, ``max |z − z_ref|`` over the ``(T, V)`` logits
of the sample (:func:`logit_stages`):

=================  =============================================================  ===========
stage              model                                                          judged by
=================  =============================================================  ===========
``loaded``         the adapter's effect, ``max |z_ref − z_base|`` (reported)      —
``plain-lora``     PiSSA/OLoRA/LoftQ only: the file's B, A added to the            a finding
                   unmodified W0 (what servers and merge tools do)
``merged``         ``merge_lora``: ``W0 + s·B A`` written into the base (float32)  rounding
``unloaded``       ``unload_lora``: the plain model with merged weights            rounding
``saved-reloaded`` that model through ``save_pretrained`` and ``from_pretrained``  rounding
                   (a temp folder, removed)
``tied-reload``    only when the config ties the embeddings and the merged        rounding
                   weights differ: that reload with the output weight tied
``4bit-merged``    merged into an NF4 base (dequantize, add, quantize again)       reported
                   against the float32 merge
``peft``           ``PeftModel.from_pretrained`` on a fresh copy of the base        rounding
=================  =============================================================  ===========

"Rounding" allows ``REL_TOL · max(1, max |z_ref|)``: a float32 merge moves a weight by about
its ulp, which reaches the logits as a relative change near 1e-6, far below it; anything
above it is something else. The 4-bit stage is requantization: its size is reported, never a
finding. Every model here is a copy; the base passed in is not changed.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from ..lora import AdapterConfig, load_adapter, merge_lora, quantize_model, unload_lora
from ..results.check import STAGES, Finding, Stage, StageRow

__all__ = ["REL_TOL", "SAMPLE_TEXT", "logit_stages", "sample_ids"]

REL_TOL = 1e-4
SAMPLE_TEXT = ("The Master said, Is it not pleasant to learn with a constant perseverance and "
               "application? Is it not delightful to have friends coming from distant quarters?")


def sample_ids(tokenizer: Any, text: str, max_tokens: int = 32) -> torch.Tensor:
    """``text`` as ``(1, T)`` token ids, ``1 ≤ T ≤ max_tokens`` (no special tokens)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    if not ids:
        raise LoralabError(f"--text {text!r} gives no tokens; give a few words")
    return torch.tensor([ids], dtype=torch.long)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' and PEFT's warnings and progress bars off (library code does not print)."""
    import transformers

    log = transformers.utils.logging
    level, bar = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.set_verbosity(level)
        if bar:
            log.enable_progress_bar()


@torch.no_grad()
def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, use_cache=False).logits.float()[0]          # (T, V)


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _row(stage: Stage, d: float | None, tol: float | None, note: str = "") -> StageRow:
    return StageRow(stage, d, tol, tol is None or (d is not None and d <= tol), note)


def _plain(base: nn.Module, folder: Path, config: AdapterConfig, ids: torch.Tensor,
           ref: torch.Tensor, tol: float) -> StageRow:
    """The file's factors on the unmodified base, as a server adds them (no split init)."""
    plain = copy.deepcopy(base)
    load_adapter(plain, folder, config=replace(config, init_lora_weights=True, loftq_config={}))
    return _row("plain-lora", _diff(_logits(plain, ids), ref), tol,
                "init_lora_weights=True: the base is not split first")


def _tied(model: nn.Module) -> bool:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    return bool(getattr(config, "tie_word_embeddings", False))


def _saved_reloaded(model: nn.Module, ids: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The logits of ``model`` saved and reloaded, and, when its config ties the embeddings
    but its weights differ, of that reload with the output weight tied to the input's (what
    a loader that honours ``tie_word_embeddings`` does; transformers 5 keeps both)."""
    import transformers

    with tempfile.TemporaryDirectory(prefix="loralab-check-") as tmp:
        model.save_pretrained(tmp)
        again = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
    z = _logits(again.eval(), ids)
    ins, outs = again.get_input_embeddings(), again.get_output_embeddings()
    if not _tied(again) or outs is None or outs.weight is ins.weight:
        return z, None
    outs.weight = ins.weight
    return z, _logits(again, ids)


def _four_bit(base: nn.Module, folder: Path, ids: torch.Tensor, merged: torch.Tensor,
              z_base: torch.Tensor) -> StageRow:
    if importlib.util.find_spec("bitsandbytes") is None:
        return _row("4bit-merged", None, None, "skipped: bitsandbytes is not installed")
    q = copy.deepcopy(base)
    quantize_model(q, bits=4, quant_type="nf4")
    base_err = _diff(_logits(q, ids), z_base)
    load_adapter(q, folder)
    merge_lora(q)
    return _row("4bit-merged", _diff(_logits(q, ids), merged), None,
                f"expected rounding; the NF4 base alone moves the logits by {base_err:.3g}")


def _peft(base: nn.Module, folder: Path, ids: torch.Tensor, ref: torch.Tensor,
          tol: float) -> StageRow:
    if importlib.util.find_spec("peft") is None:
        return _row("peft", None, None, "skipped: PEFT is not installed")
    from peft import PeftModel

    model = PeftModel.from_pretrained(copy.deepcopy(base), str(folder)).eval()
    return _row("peft", _diff(_logits(model, ids), ref), tol)


def _merge_stages(model: nn.Module, ids: torch.Tensor, ref: torch.Tensor, tol: float
                  ) -> tuple[list[StageRow], torch.Tensor | None]:
    """merged, unloaded, saved-reloaded on ``model`` (which they change); the merged logits."""
    try:
        merge_lora(model)
    except LoralabError as exc:
        note = f"refused: {exc}"
        return [_row(s, None, None, note) for s in ("merged", "unloaded", "saved-reloaded")], None
    merged = _logits(model, ids)
    rows = [_row("merged", _diff(merged, ref), tol)]
    unload_lora(model)
    rows.append(_row("unloaded", _diff(_logits(model, ids), ref), tol))
    z, z_tied = _saved_reloaded(model, ids)
    rows.append(_row("saved-reloaded", _diff(z, ref), tol))
    if z_tied is not None:
        rows.append(_row("tied-reload", _diff(z_tied, ref), tol,
                         "the config ties the embeddings, the merged weights differ"))
    return rows, merged


def logit_stages(base: nn.Module, folder: str | os.PathLike[str], config: AdapterConfig,
                 ids: torch.Tensor) -> tuple[list[StageRow], list[Finding]]:
    """Every stage of the module table for the adapter at ``folder`` on ``base`` (a
    transformers causal LM, not changed), on the ``(1, T)`` sample ``ids``. Returns the rows
    and the findings: a judged stage beyond rounding (``plain-lora`` is reported; the
    unconverted init is the caller's finding)."""
    folder = Path(folder)
    base = base.eval()
    with _quiet():
        z_base = _logits(base, ids)
        model = copy.deepcopy(base)
        load_adapter(model, folder)
        ref = _logits(model, ids)
        tol = REL_TOL * max(1.0, float(ref.abs().max()))
        rows = [_row("loaded", _diff(ref, z_base), None)]
        if config.init.splits_base:
            rows.append(_plain(base, folder, config, ids, ref, tol))
        merge_rows, merged = _merge_stages(model, ids, ref, tol)
        rows += merge_rows
        del model
        if merged is not None:
            rows.append(_four_bit(base, folder, ids, merged, z_base))
        rows.append(_peft(base, folder, ids, ref, tol))
    findings = [Finding("stage", f"{STAGES[r.stage]}: max |Δz| = {r.max_abs_diff:.3g}, above "
                                 f"the {r.tolerance:.3g} float32 rounding allows")
                for r in rows if not r.holds and r.max_abs_diff is not None
                and r.stage != "plain-lora"]
    return rows, findings
