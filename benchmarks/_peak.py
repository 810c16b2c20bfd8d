"""The matmul peak every benchmark measures at its start (and divides by), via loralab.peak.

Scripts here import it as ``from _peak import ...`` (``benchmarks/`` is the script's folder,
so it is first on ``sys.path``). No peak is ever typed in: utilisation is achieved FLOP/s
over the peak measured in the same process, at the same thread count, just before timing.
"""

from __future__ import annotations

import torch

from loralab.peak import default_n, measure_matmul_peak

__all__ = ["measure_peak", "peak_line", "utilisation"]

_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def measure_peak(dtype: torch.dtype = torch.float32, device: str = "cpu",
                 n: int | None = None, repeats: int = 10) -> float:
    """FLOP/s of an ``n × n`` matmul now (best of ``repeats``), measured afresh."""
    return measure_matmul_peak(n, repeats, dtype, device, refresh=True)


def peak_line(flops: float, dtype: torch.dtype = torch.float32, device: str = "cpu",
              n: int | None = None, what: str = "matmul peak measured now",
              repeats: int = 10) -> str:
    """``fp32 matmul peak measured now: 118 GFLOP/s (n = 1024, 2 threads, cpu, best of 10)``."""
    n = default_n(device) if n is None else n
    scale, unit = (1e12, "TFLOP/s") if flops >= 1e12 else (1e9, "GFLOP/s")
    threads = f"{torch.get_num_threads()} threads, " if torch.device(device).type == "cpu" else ""
    return (f"{_NAMES.get(dtype, str(dtype))} {what}: {flops / scale:.1f} {unit} "
            f"(n = {n}, {threads}{device}, best of {repeats})")


def utilisation(achieved: float, peak: float) -> str:
    """``'72%'``: achieved FLOP/s over the measured peak."""
    return f"{100 * achieved / peak:.0f}%"
