"""The fine-tuning experiment: full fine-tuning against LoRA at several ranks on a tiny LM.

What it computes (:class:`ExperimentConfig`), how it runs (:class:`RunOptions`), its
presets and its result types are plain data in :mod:`loralab.results` (below the figures,
which read them), re-exported here. This package computes:

* :mod:`.config`: :func:`~.config.check_plan`, the plan checked before any work;
* :mod:`.context`: :class:`~.context.RunContext` (device, process group, progress, options);
* :mod:`.workload`, :mod:`.base`: the base, its tokenizer, the data, the target sets;
* :mod:`.methods`, :mod:`.one_run`, :mod:`.jobs`: each run, one after another or side by side;
* :mod:`.resume`: the resume folder a Ctrl-C leaves;
* :mod:`.analysis`, :mod:`.direction`: merge checks, ΔW spectra, truncation, amplification,
  samples, targets, DoRA's view;
* :mod:`.tables`: the text / markdown tables; :mod:`.outputs`: every file of ``--out``;
* :mod:`.driver`: :func:`run_experiment`, which does it all.
"""

from __future__ import annotations

from ..results.finetune import ExperimentResult, RunResult, result_from_dict
from ..results.finetune_config import ExperimentConfig, RunOptions, RunSpec, plan_runs
from ..results.presets import PRESETS, PresetSpec, parse_targets
from .config import check_plan
from .context import RunContext
from .driver import default_cache_dir, run_experiment, total_steps
from .tables import format_samples, format_tables

__all__ = [
    "PRESETS",
    "ExperimentConfig",
    "ExperimentResult",
    "PresetSpec",
    "RunContext",
    "RunOptions",
    "RunResult",
    "RunSpec",
    "check_plan",
    "default_cache_dir",
    "format_samples",
    "format_tables",
    "parse_targets",
    "plan_runs",
    "result_from_dict",
    "run_experiment",
    "total_steps",
]
