"""Wall time of `python lora_rank_demo.py` against the seed's script rebuilt from its doc.

Both run as whole processes (imports included, as a student experiences them), alternating,
in fresh temporary folders, with the same interpreter. Prints each run, the medians and the
median ratio ours/seed (target <= 1.0). The demo reports no utilisation; the fp32 matmul
peak is measured before and after (loralab.peak, torch's default thread count) only to show
how loaded the machine was while the two were timed.

    .venv/bin/python benchmarks/bench_demo.py [--repeats 7] [--baseline PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _peak import measure_peak, peak_line

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = ROOT.parent / "shared" / "baseline" / "seed_lora_rank_demo.py"


def wall(script: Path, cwd: str) -> float:
    """Seconds for one `python script` run in `cwd`; raises if it fails or draws nothing."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(script)], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    png = Path(cwd) / "lora_rank_error.png"
    if not png.is_file():
        raise RuntimeError(f"{script} wrote no lora_rank_error.png")
    png.unlink()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    args = parser.parse_args()
    if not args.baseline.is_file():
        sys.exit(f"error: baseline script {args.baseline} not found")
    ours = ROOT / "lora_rank_demo.py"
    peak = measure_peak()
    print(peak_line(peak, what="matmul peak before the runs"))
    times: dict[str, list[float]] = {"seed (baseline)": [], "loralab": []}
    with tempfile.TemporaryDirectory() as tmp:
        wall(ours, tmp)  # warm the page cache and bytecode for both
        wall(args.baseline, tmp)
        for i in range(args.repeats):
            pair = [("seed (baseline)", args.baseline), ("loralab", ours)]
            for name, script in (pair if i % 2 == 0 else pair[::-1]):
                times[name].append(wall(script, tmp))
    print(f"{'run':<18}" + "".join(f"{i + 1:>7}" for i in range(args.repeats)) + "   median")
    for name, ts in times.items():
        print(f"{name:<18}" + "".join(f"{t:7.2f}" for t in ts) + f"  {statistics.median(ts):7.2f}")
    ratio = statistics.median(times["loralab"]) / statistics.median(times["seed (baseline)"])
    paired = statistics.median(a / b for a, b in zip(times["loralab"], times["seed (baseline)"],
                                                       strict=True))
    print(f"\nmedian wall ratio loralab / seed = {ratio:.2f}  "
          f"(median of paired ratios {paired:.2f}; target <= 1.0)")
    end = measure_peak()
    print(f"{peak_line(end, what='matmul peak after the runs')}: {end / peak:.2f}x the one "
          "before (below 1: the load grew while timing)")


if __name__ == "__main__":
    main()
