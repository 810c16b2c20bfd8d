"""The experiment's result types, defined in :mod:`loralab.results.finetune` (below the
figures, which read them) and importable here too."""

from __future__ import annotations

from ..results.finetune import (
    CONFIG_KEYS,
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
    config_dict,
    config_from_dict,
    result_from_dict,
)
from ..results.headline import HEADLINE_RANK, headline_rank, headline_run, headline_runs

__all__ = [
    "CONFIG_KEYS",
    "HEADLINE_RANK",
    "Amplification",
    "AmplificationRow",
    "Analysis",
    "BaseInfo",
    "ExperimentResult",
    "LayerSpectrum",
    "MDPoint",
    "MagnitudeDirection",
    "MergeCheck",
    "RsLoraRow",
    "RunResult",
    "Sample",
    "Targets",
    "TruncationRow",
    "config_dict",
    "config_from_dict",
    "headline_rank",
    "headline_run",
    "headline_runs",
    "result_from_dict",
]
