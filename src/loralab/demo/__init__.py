"""The seed's teaching demo: ``LoraConfig``, ``simulate_lora`` and ``pseudo_code``.

* :mod:`.result`: the seed's ``LoraConfig`` and the :class:`DemoResult` (types only);
* :mod:`.run`: :func:`run_demo` (the computation), :func:`simulate_lora` (table + figure);
* :mod:`.pseudo`: :func:`pseudo_code`.

The theory of the seed's number, ``E‖ΔW‖_F = α·sqrt(d_out·d_in/r)``, is
:func:`loralab.lowrank.theory.theory_delta_norm` (re-exported here).
"""

from __future__ import annotations

from ..lowrank.theory import theory_delta_norm
from .pseudo import PSEUDO_CODE, pseudo_code
from .result import DTYPES, DemoResult, LoraConfig, RankRow
from .run import format_table, plot_path_default, run_demo, simulate_lora

__all__ = [
    "DTYPES",
    "PSEUDO_CODE",
    "DemoResult",
    "LoraConfig",
    "RankRow",
    "format_table",
    "plot_path_default",
    "pseudo_code",
    "run_demo",
    "simulate_lora",
    "theory_delta_norm",
]
