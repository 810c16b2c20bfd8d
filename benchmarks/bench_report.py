"""Build time and size of the classroom report at each preset (and both languages).

For each (preset, lang): wall time of ``collect_report`` split into its parts (demo, rank
explorer, analyses, fine-tuning) plus rendering, and the size of ``index.html``. Presets are
interleaved over repeats and the median is printed, so machine noise hits all alike.
``--threads`` as ``loralab report --threads`` (0: the default rule of loralab.threads, one
thread for the tiny fine-tuning models). The fp32 matmul peak at that thread count is
measured before and after (loralab.peak), and the fine-tuning runs' utilisation is against
the peak measured in the process (loralab.lm.train), so both are comparable across runs.

    .venv/bin/python benchmarks/bench_report.py                 # quick and default, en + zh
    .venv/bin/python benchmarks/bench_report.py --presets quick --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="quick,default")
    parser.add_argument("--langs", default="en,zh")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: loralab's default rule, as the CLI)")
    args = parser.parse_args()

    import torch
    from _peak import measure_peak, peak_line

    from loralab.report import ReportConfig, build_report, collect_report
    from loralab.threads import default_threads

    if args.threads == 0:                    # the CLI's rule: the largest preset is tiny
        from loralab.experiment.presets import PRESETS

        m = max((PRESETS[p].model for p in args.presets.split(",")), key=lambda c: c.d_model)
        args.threads = default_threads(max(m.d_ff * m.d_model, m.vocab_size * m.d_model))
    torch.set_num_threads(args.threads)
    peak = measure_peak()

    keys = [(p, lang) for p in args.presets.split(",") for lang in args.langs.split(",")]
    runs: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in keys}
    sizes: dict[tuple[str, str], int] = {}
    missing: dict[tuple[str, str], list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for preset, lang in keys:
                start = time.perf_counter()
                data = collect_report(ReportConfig(preset=preset, lang=lang))
                path = build_report(out=Path(tmp) / f"{preset}_{lang}", data=data)
                parts = dict(data.seconds)
                parts["total"] = time.perf_counter() - start
                runs[(preset, lang)].append(parts)
                sizes[(preset, lang)] = path.stat().st_size
                missing[(preset, lang)] = [k for k, e in data.extensions.items() if e.missing]

    print(f"loralab report build, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    end = measure_peak()
    print(f"{peak_line(peak, what='matmul peak before the builds')}; after: "
          f"{end / 1e9:.1f} GFLOP/s ({end / peak:.2f}x)")
    names = ["demo", "slider", "analyses", "finetune", "render", "total"]
    print(f"{'preset':>8} {'lang':>4} " + " ".join(f"{n:>9}" for n in names)
          + f" {'size MiB':>9}  missing")
    for key in keys:
        med = {n: statistics.median(r.get(n, 0.0) for r in runs[key]) for n in names}
        print(f"{key[0]:>8} {key[1]:>4} " + " ".join(f"{med[n]:>8.1f}s" for n in names)
              + f" {sizes[key] / 2**20:>9.2f}  {','.join(missing[key]) or '-'}")


if __name__ == "__main__":
    main()
