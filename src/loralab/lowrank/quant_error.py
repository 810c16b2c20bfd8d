"""How much of the quantization error a rank-r adapter can win back (``loralab quant``).

QLoRA starts from ``W ≈ Q(W)`` with ``B = 0``: its error is ``‖W − Q(W)‖_F``. LoftQ fits the
adapter to what quantization lost, so the error becomes ``‖W − Q − s·B A‖_F``
(:func:`loralab.quantizer.loftq`). Whether rank r can win much back depends on the spectrum of
``E = W − Q(W)``: a quantization error that looks like noise has the flat singular values
of a random matrix of its size (the Marchenko–Pastur law), and a rank-r fit then removes
little; structure (outlier columns, trained weights) shows as singular values above the
random ones. All norms are absolute Frobenius norms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..errors import LoralabError
from ..fileio.tensors import checked_cast
from ..quantizer import loftq, quantized
from .matrices import as_matrix, check_range, check_ranks
from .theory import gaussian_singular_values

__all__ = ["QuantAnalysis", "QuantRow", "analyze_quant"]

_IN_FLOAT32 = "quant computes in float32 whatever --dtype says (as NF4/int8 do); scale the matrix"


@dataclass(frozen=True)
class QuantRow:
    """LoftQ at one rank after ``iters`` rounds: ``‖W − Q − s·B A‖_F``."""

    rank: int
    iters: int
    residual: float


@dataclass
class QuantAnalysis:
    """``‖W‖_F``, ``‖W − Q(W)‖_F``, the LoftQ rows, and the spectrum of ``W − Q(W)`` beside
    the expected singular values of a random matrix of its shape and RMS."""

    label: str
    shape: tuple[int, int]
    bits: int
    frobenius_norm: float
    quant_error: float
    rows: list[QuantRow] = field(default_factory=list)
    error_singular_values: list[float] = field(default_factory=list)
    random_singular_values: list[float] = field(default_factory=list)

    def residual(self, rank: int, iters: int) -> float:
        return next(r.residual for r in self.rows if (r.rank, r.iters) == (rank, iters))

    def to_dict(self) -> dict[str, Any]:
        """``{"quant_error", "rows": [{"rank", "iters", "residual"}], ...}``."""
        return {"matrix": self.label, "shape": list(self.shape), "bits": self.bits,
                "frobenius_norm": self.frobenius_norm, "quant_error": self.quant_error,
                "relative_quant_error": (self.quant_error / self.frobenius_norm
                                         if self.frobenius_norm > 0 else None),  # W = 0: n/a
                "rows": [asdict(r) for r in self.rows],
                "error_singular_values": self.error_singular_values,
                "random_singular_values": self.random_singular_values}


def analyze_quant(w: Any, ranks: Any, *, bits: int = 4, iters: int = 5,
                  label: str = "W") -> QuantAnalysis:
    """Quantize ``w: (m, n)`` to ``bits``, then LoftQ at each rank for 1..``iters`` rounds."""
    w = as_matrix(w, name=label)
    # the quantizers compute in float32: check the matrix they will see, after the cast
    w = checked_cast(w, torch.float32, label, _IN_FLOAT32)
    check_range(w, name=label, advice=_IN_FLOAT32)
    if not bool(w.any()):
        raise LoralabError(f"{label} is all zeros: Q(0) = 0 exactly, so there is no quantization "
                           "error for LoftQ to win back; give a non-zero matrix")
    shape = (int(w.shape[0]), int(w.shape[1]))
    ranks = check_ranks(ranks, shape)
    if isinstance(iters, bool) or not isinstance(iters, int) or not 1 <= iters <= 100:
        raise LoralabError(f"iters={iters!r} is not allowed; it must be an integer in 1..100")
    error = w - quantized(w, bits)
    out = QuantAnalysis(label=label, shape=shape, bits=bits,
                        frobenius_norm=float(w.norm()), quant_error=float(error.norm()))
    for r in ranks:
        fit = loftq(w, r, bits=bits, iters=iters)
        out.rows += [QuantRow(r, t + 1, res) for t, res in enumerate(fit.residuals)]
    sv = torch.linalg.svdvals(error.double())
    out.error_singular_values = sv.tolist()
    rms = float(error.norm()) / (shape[0] * shape[1]) ** 0.5
    out.random_singular_values = [float(v) for v in
                                  gaussian_singular_values(*shape, std=rms)]
    return out
