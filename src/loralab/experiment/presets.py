"""The experiment's presets and target sets, defined in :mod:`loralab.results.presets` (the
results record them) and importable here too."""

from __future__ import annotations

from ..results.presets import (
    CORPUS_VERSION,
    MODULES,
    PRESETS,
    TARGET_PRESETS,
    Preset,
    PresetSpec,
    parse_targets,
)

__all__ = ["CORPUS_VERSION", "MODULES", "PRESETS", "TARGET_PRESETS", "Preset", "PresetSpec",
           "parse_targets"]
