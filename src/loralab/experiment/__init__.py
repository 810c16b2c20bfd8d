"""The fine-tuning experiment: full fine-tuning against LoRA at several ranks on a tiny LM.

* :mod:`.presets`: sizes and schedules (``quick``, ``default``), target sets;
* :mod:`.config`: :class:`ExperimentConfig` and the run plan;
* :mod:`.results`: the result types (read by :mod:`loralab.plots` and :mod:`loralab.report`);
* :mod:`.analysis`: merge checks, ΔW spectra, truncation, amplification, samples, targets;
* :mod:`.tables`: the text / markdown tables; :mod:`.outputs`: every file of ``--out``;
* :mod:`.driver`: :func:`run_experiment`, which does it all.
"""

from __future__ import annotations

from .config import ExperimentConfig, RunSpec, plan_runs
from .driver import default_cache_dir, run_experiment, total_steps
from .presets import PRESETS, PresetSpec, parse_targets
from .results import ExperimentResult, RunResult, result_from_dict
from .tables import format_samples, format_tables

__all__ = [
    "PRESETS",
    "ExperimentConfig",
    "ExperimentResult",
    "PresetSpec",
    "RunResult",
    "RunSpec",
    "default_cache_dir",
    "format_samples",
    "format_tables",
    "parse_targets",
    "plan_runs",
    "result_from_dict",
    "run_experiment",
    "total_steps",
]
