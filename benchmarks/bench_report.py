"""Build time and size of the classroom report at each preset (and both languages).

For each (preset, lang): wall time of ``collect_report`` split into its parts (demo, rank
explorer, analyses, fine-tuning) plus rendering, and the size of ``index.html``. Presets are
interleaved over repeats and the median is printed, so machine noise hits all alike.

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
    args = parser.parse_args()

    import torch

    from loralab.report import ReportConfig, build_report, collect_report

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
    names = ["demo", "slider", "analyses", "finetune", "render", "total"]
    print(f"{'preset':>8} {'lang':>4} " + " ".join(f"{n:>9}" for n in names)
          + f" {'size MiB':>9}  missing")
    for key in keys:
        med = {n: statistics.median(r.get(n, 0.0) for r in runs[key]) for n in names}
        print(f"{key[0]:>8} {key[1]:>4} " + " ".join(f"{med[n]:>8.1f}s" for n in names)
              + f" {sizes[key] / 2**20:>9.2f}  {','.join(missing[key]) or '-'}")


if __name__ == "__main__":
    main()
