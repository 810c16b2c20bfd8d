"""The seed demo's types, defined in :mod:`loralab.results.demo` (below the figures, which
read them) and importable here too."""

from __future__ import annotations

from ..results.demo import DTYPES, DemoResult, DType, LoraConfig, RankRow

__all__ = ["DTYPES", "DType", "DemoResult", "LoraConfig", "RankRow"]
