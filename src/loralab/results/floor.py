"""The least wall time an experiment's arithmetic allows on the machine it ran on.

``floor_s = flops / peak``: the analytic FLOPs of everything the experiment computed
(every training step, every evaluation forward) over the dense matmul peak measured in the
same run (:func:`loralab.peak.measure_matmul_peak`, at the run's thread count). No schedule
of the same arithmetic can finish faster on this machine; ``wall_s / floor_s`` is how far the
run was from it. Attention's ``Q Kᵀ`` / ``A V``, norms, softmax and the optimizer's update are
not counted (a few % at these sequence lengths), so the floor is a slight under-estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Floor"]


@dataclass(frozen=True)
class Floor:
    """FLOPs by part (``train``: the optimizer steps; ``evaluate``: every val-loss forward,
    the general text's included; ``analysis``: the merge checks', truncations' and samples'
    forwards), the peak in FLOP/s, and the experiment's wall time. ``restored_runs``: runs
    finished by an earlier invocation and restored from the resume folder, counted in neither
    the FLOPs nor the wall."""

    train_flops: float
    evaluate_flops: float
    analysis_flops: float
    peak_flops: float
    wall_s: float
    restored_runs: int = 0

    @property
    def flops(self) -> float:
        return self.train_flops + self.evaluate_flops + self.analysis_flops

    @property
    def floor_s(self) -> float:
        """``flops / peak``: the least wall time (s); NaN without a measured peak."""
        ok = math.isfinite(self.peak_flops) and self.peak_flops > 0
        return self.flops / self.peak_flops if ok else math.nan

    @property
    def ratio(self) -> float:
        """``wall_s / floor_s`` (1 would be every core at its matmul peak all the time)."""
        return self.wall_s / self.floor_s if self.floor_s > 0 else math.nan

    def line(self) -> str:
        """``floor 210 s (62.1 TFLOP: train 50.3, evaluate 9.8, analysis 2.0, at 295.0
        GFLOP/s, the matmul peak measured in this run); wall 1,000 s = 4.76× the floor``."""
        return (f"floor {self.floor_s:,.0f} s ({self.flops / 1e12:.1f} TFLOP: train "
                f"{self.train_flops / 1e12:.1f}, evaluate {self.evaluate_flops / 1e12:.1f}, "
                f"analysis {self.analysis_flops / 1e12:.1f}, at {self.peak_flops / 1e9:.1f} "
                f"GFLOP/s, the matmul peak measured in this run); wall {self.wall_s:,.0f} s "
                f"= {self.ratio:.2f}× the floor"
                + (f" ({self.restored_runs} run{'s' if self.restored_runs > 1 else ''} "
                   "restored from an earlier invocation counted in neither)"
                   if self.restored_runs else ""))

    def to_dict(self) -> dict:
        return {"train_flops": self.train_flops, "evaluate_flops": self.evaluate_flops,
                "analysis_flops": self.analysis_flops, "peak_flops": self.peak_flops,
                "wall_s": self.wall_s, "flops": self.flops, "floor_s": self.floor_s,
                "ratio": self.ratio, "restored_runs": self.restored_runs}
