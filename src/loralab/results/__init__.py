"""The plain data that flows up the layers: what a study was asked and what it measured.

* :mod:`.demo`: the seed's ``LoraConfig`` and :class:`DemoResult`;
* :mod:`.presets`: the experiment's presets (sizes, schedules) and target sets;
* :mod:`.finetune_config`: what the experiment computes (:class:`ExperimentConfig`), how it
  runs (:class:`RunOptions`), and its plan (:class:`RunSpec`, :func:`plan_runs`);
* :mod:`.finetune`: :class:`ExperimentResult` and its parts, ``results.json`` and back;
* :mod:`.headline`: which runs a comparison is judged on;
* :mod:`.verdict`: a paper's claim, this run's numbers and one word (:class:`Verdict`).

This layer sits below :mod:`loralab.plots` and above ``lora | lowrank | lm``: the studies
(:mod:`loralab.experiment`, :mod:`loralab.demo`) fill these types, the figures and the
report read them, and nothing here imports anything above it. No computation lives here
beyond validating a config and reading a result back.
"""

from __future__ import annotations

from .demo import DTYPES, DemoResult, DType, LoraConfig, RankRow
from .finetune import (
    Amplification,
    AmplificationRow,
    Analysis,
    BaseInfo,
    ExperimentResult,
    LayerSpectrum,
    MagnitudeDirection,
    MDPoint,
    MergeCheck,
    RsLoraRow,
    RunResult,
    Sample,
    Targets,
    TruncationRow,
    result_from_dict,
)
from .finetune_config import ExperimentConfig, RunOptions, RunSpec, plan_runs, run_label
from .forgetting import Forgetting, ForgettingPoint
from .headline import HEADLINE_RANK, headline_rank, headline_run, headline_runs
from .intruders import IntruderMap, IntruderRow, Intruders, IntruderSettings, LambdaPoint
from .presets import PRESETS, Preset, PresetSpec, parse_targets
from .verdict import VERDICT_WORDS, Verdict, verdict_from_dict

__all__ = [
    "DTYPES",
    "HEADLINE_RANK",
    "PRESETS",
    "Amplification",
    "AmplificationRow",
    "Analysis",
    "BaseInfo",
    "DType",
    "DemoResult",
    "ExperimentConfig",
    "ExperimentResult",
    "Forgetting",
    "ForgettingPoint",
    "IntruderMap",
    "IntruderRow",
    "IntruderSettings",
    "Intruders",
    "LambdaPoint",
    "LayerSpectrum",
    "LoraConfig",
    "MDPoint",
    "MagnitudeDirection",
    "MergeCheck",
    "Preset",
    "PresetSpec",
    "RankRow",
    "RsLoraRow",
    "RunOptions",
    "RunResult",
    "RunSpec",
    "Sample",
    "Targets",
    "TruncationRow",
    "VERDICT_WORDS",
    "Verdict",
    "headline_rank",
    "headline_run",
    "headline_runs",
    "parse_targets",
    "plan_runs",
    "result_from_dict",
    "run_label",
    "verdict_from_dict",
]
