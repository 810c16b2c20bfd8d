"""A whole rank sweep against one `torch.linalg.svdvals` of the same matrix (target <= 1.2).

For each size d (a Gaussian d x d float32 matrix) and ranks 2, 4, ..., min(256, d/4), times,
interleaved and alternating the order each repeat:

  svdvals      torch.linalg.svdvals(W)                          the reference: one SVD
  sweep        loralab.lowrank.svd_sweep(W, ranks)              every rank's Eckart–Young errors
  svd cmd      analyze_svd(W, ranks, check=False)               + the seed's random BA baseline
  randomized   randomized_sweep(W, ranks <= 32)                  torch.svd_lowrank, q = 42

and prints the medians and the median of the per-repeat ratios to svdvals, then the
randomized path's error against the exact one on the same Gaussian matrix (its worst case: a
flat spectrum) and on a low-rank-plus-noise one. With --check, also the explicit Eckart–Young
check (thin SVD plus one spectral norm per rank), which is not part of the sweep.

The fp32 matmul peak is measured at the start (loralab.peak, the same thread count), and the
last column gives svdvals' FLOP rate against it, counting the ``8/3·d³`` FLOPs of the
Golub–Kahan bidiagonalisation that dominates a values-only SVD: half of those are
matrix-vector products, bound by memory bandwidth, which is why an SVD runs far below the
matmul peak.

    .venv/bin/python benchmarks/bench_lowrank.py [--sizes 512,1024,2048,4096] [--repeats 5,3,3,2]
                                                 [--threads N] [--check]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _peak import measure_peak, peak_line

from loralab.lowrank import (
    analyze_svd,
    compare_sweeps,
    eckart_young_check,
    gaussian_matrix,
    low_rank_plus_noise,
    randomized_sweep,
    svd_sweep,
)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ints(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip()]


def bench_size(d: int, repeats: int, check: bool) -> dict[str, list[float]]:
    w = gaussian_matrix(d, d, seed=0)
    ranks = [r for r in (2, 4, 8, 16, 32, 64, 128, 256) if r <= max(2, d // 4)]
    small = [r for r in ranks if r <= 32]
    cases: dict[str, Callable[[], object]] = {
        "svdvals": lambda: torch.linalg.svdvals(w),
        "sweep": lambda: svd_sweep(w, ranks),
        "svd cmd": lambda: analyze_svd(w, ranks, check=False),
        "randomized": lambda: randomized_sweep(w, small),
    }
    if check:
        cases["check"] = lambda: eckart_young_check(w, small)
    for fn in cases.values():           # warm-up (allocator, LAPACK workspace)
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(timed(cases[name]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=ints, default=[512, 1024, 2048, 4096])
    parser.add_argument("--repeats", type=ints, default=[5, 3, 3, 2],
                        help="per size (the last value repeats for further sizes)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; 1 is steadier on a busy machine)")
    parser.add_argument("--check", action="store_true",
                        help="also time the explicit Eckart–Young check (costly for large d)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = measure_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, "
          "Gaussian d x d; median seconds (median of the per-repeat ratios to svdvals)")
    print(peak_line(peak))
    header = None
    for idx, d in enumerate(args.sizes):
        reps = args.repeats[min(idx, len(args.repeats) - 1)]
        times = bench_size(d, reps, args.check)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        # Paired: each repeat's time over the svdvals timed next to it (robust to load drift).
        paired = {name: statistics.median(t / b for t, b in zip(ts, times["svdvals"],
                                                                strict=True))
                  for name, ts in times.items()}
        if header is None:
            header = (f"{'d':>6} {'reps':>4}  " + "  ".join(f"{n:>26}" for n in med)
                      + "  svdvals % of peak")
            print(header)
        rate = 8 / 3 * d**3 / med["svdvals"]
        print(f"{d:>6} {reps:>4}  " + "  ".join(
            f"{f'{med[n]:.3f} s ({paired[n]:.2f}x)':>26}" for n in med)
            + f"  {100 * rate / peak:>17.1f}%", flush=True)

    print("\nrandomized path (q = max rank + 10, 2 power iterations) against the exact sweep, "
          "ranks 2..32:")
    d = min(args.sizes[-1], 2048)
    for label, w in (("gaussian", gaussian_matrix(d, d, seed=0)),
                     ("low rank 32 + noise 0.1", low_rank_plus_noise(d, d, seed=0))):
        ranks = [2, 4, 8, 16, 32]
        cmp = compare_sweeps(svd_sweep(w, ranks), randomized_sweep(w, ranks))
        print(f"  d = {d}, {label:<24} best-error rel. diff max {cmp.max_optimal_rel_diff:.1e}, "
              f"top-32 singular values max rel. diff {cmp.max_singular_value_rel_diff:.1e}")


if __name__ == "__main__":
    main()
