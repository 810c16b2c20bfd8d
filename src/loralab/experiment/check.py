"""``loralab check``: a PEFT-format adapter folder against a base, end to end.

Two steps, so that bad input is refused before any work (and before a command creates
anything): :func:`prepare_check` reads the adapter (config, safetensors, no pickle), loads the
base (a folder, a hub id, a ``.gguf`` file or the built-in ``smollm2``, through
:func:`loralab.lm.hf_model.load_causal_lm`), tokenises the sample and matches every key
(:func:`~loralab.experiment.check_keys.analyse_keys`); each problem there is one
:class:`~loralab.errors.LoralabError`. :func:`run_check` then measures the logit stages
(:mod:`~loralab.experiment.check_stages`, skipped when the adapter cannot load as it is) and
lists the serving limits (:mod:`~loralab.experiment.check_servers`), and returns a
:class:`~loralab.results.check.CheckReport`. :func:`check_adapter` does both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..lora import AdapterConfig
from ..lora.loading import read_adapter
from ..results.check import CheckReport, Finding
from .check_keys import KeyAnalysis, analyse_keys
from .check_servers import server_limits
from .check_stages import SAMPLE_TEXT, logit_stages, sample_ids

__all__ = ["CheckInputs", "check_adapter", "prepare_check", "run_check"]


@dataclass
class CheckInputs:
    """Everything :func:`prepare_check` read and checked: the adapter folder, its config and
    tensors, the base (a transformers model) and its name, the sample ids ``(1, T)`` and the
    key analysis."""

    folder: Path
    config: AdapterConfig
    tensors: dict[str, torch.Tensor]
    base: Any
    base_name: str
    ids: torch.Tensor
    keys: KeyAnalysis


def prepare_check(adapter: str | os.PathLike[str], model: str, text: str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None) -> CheckInputs:
    """Read and check every input (each problem one
    :class:`~loralab.errors.LoralabError`, nothing changed or written): the adapter folder,
    the base ``model``, the sample ``text`` (default
    :data:`~loralab.experiment.check_stages.SAMPLE_TEXT`), and that the base fits the
    adapter at all."""
    from ..lm.hf_model import load_causal_lm

    config, tensors = read_adapter(adapter)
    wrapper, tokenizer = load_causal_lm(model, cache_dir=cache_dir)
    ids = sample_ids(tokenizer, SAMPLE_TEXT if text is None else text)
    keys = analyse_keys(wrapper.hf, config, tensors)
    return CheckInputs(Path(adapter), config, tensors, wrapper.hf, model, ids, keys)


def _init_finding(config: AdapterConfig, report: CheckReport) -> Finding:
    init = config.init
    plain = next((r for r in report.stages if r.stage == "plain-lora"), None)
    size = "" if plain is None or plain.max_abs_diff is None else (
        f" (on the sample, max |Δz| = {plain.max_abs_diff:.3g} from what was trained)")
    if init.kind == "loftq":
        how = ("LoftQ's adapter is right on the base LoftQ made, Q(W0), not on W0; serve it "
               "with that base (PEFT's conversion covers PiSSA and OLoRA, not LoftQ)")
    else:
        again = " (randomly: pissa_niter_K splits differently each time)" if \
            init.pissa_niter else ""
        how = ("convert it with PEFT's save_pretrained(..., "
               "path_initial_model_for_weight_conversion=<the adapter as initialised>), which "
               f"doubles r; PEFT and loralab split the base again at load{again}")
    return Finding("unconverted-init", (
        f"init_lora_weights={init.peft_value!r} was not converted: B·A started as part of W0, "
        f"so servers and merge tools that add s·B·A to the unmodified W0 get another model"
        f"{size}; {how}"))


def run_check(inputs: CheckInputs) -> CheckReport:
    """Measure and judge (see the module text); the base in ``inputs`` is not changed."""
    k, config = inputs.keys, inputs.config
    report = CheckReport(
        adapter=str(inputs.folder), base=inputs.base_name, keys=k.keys, modules=k.modules,
        layers=sorted({m.layer for m in k.modules if m.layer is not None}),
        modules_to_save=k.saved, base_vocab=k.base_vocab, saved_embeddings=k.saved_embeddings,
        base_tied=k.base_tied, ties_kept=k.ties_kept, init=config.init.peft_value,
        init_converted=not config.init.splits_base, text_tokens=int(inputs.ids.shape[1]),
        findings=list(k.findings))
    if k.loadable:
        report.stages, found = logit_stages(inputs.base, inputs.folder, config, inputs.ids)
        report.findings += found
    else:
        report.stages_note = "logit stages skipped: the adapter does not load as it is"
    if config.init.splits_base:
        report.findings.append(_init_finding(config, report))
    vocab_differs = any(f.kind == "vocab-size" for f in report.findings)
    report.limits = server_limits(config, sorted(inputs.tensors),
                                  max((m.rank for m in k.modules), default=0), vocab_differs)
    return report


def check_adapter(adapter: str | os.PathLike[str], model: str, text: str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None) -> CheckReport:
    """:func:`prepare_check` then :func:`run_check`: the adapter at ``adapter`` against the
    base ``model``. ``CheckReport.ok`` when nothing makes it differ from what was trained."""
    return run_check(prepare_check(adapter, model, text, cache_dir))
