"""One self-contained HTML page for the classroom: DIR/index.html.

Runs the seed demo, the rank explorer, the low-rank analyses and (at the chosen preset) the
full-vs-LoRA fine-tuning experiment, and writes one page following the seed's chapters with
this run's numbers: figures embedded, CSS/JS inline, MathML formulas, a table of contents and
a rank slider. Nothing is fetched; open it from file://. The folder is built in a temp folder
and moved into place only when complete.

  loralab report --out report                    English, default preset
  loralab report --preset quick --lang zh --out report_zh
  loralab report --finetune finetune_out --out report   chapter 7.5 from an earlier finetune
"""

from __future__ import annotations

import argparse

from ._args import add_force_option, positive_int, seed_int, thread_count

STAGES = {"demo": "the seed demo", "slider": "the rank explorer (one heatmap per rank)",
          "analyses": "the low-rank analyses (chapter 7.1-7.4)",
          "finetune": "the fine-tuning experiment (chapter 7.5)"}
HELP = "the classroom page: self-contained HTML report (en/zh) with a rank slider"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--preset``, ``--lang``, ``--out``, ``--seed``, ``--threads`` and switches to skip slow
    parts."""
    parser.add_argument("--preset", choices=("quick", "default"), default="default",
                        help="size of the analyses and of the fine-tuning run: quick (small "
                             "analyses, the experiment's quick preset) or default (the full "
                             "lesson; minutes on a CPU)")
    parser.add_argument("--lang", choices=("en", "zh"), default="en",
                        help="language of the whole page and of the figure labels (default en)")
    parser.add_argument("--out", default="report", metavar="DIR",
                        help="folder to write index.html into; created, or replaced if it "
                             "holds only a previous report (default ./report)")
    add_force_option(parser, "--out DIR/index.html")
    parser.add_argument("--seed", type=seed_int, default=42, help="random seed (default 42)")
    parser.add_argument("--hidden-size", type=positive_int, default=512, metavar="D",
                        help="d of the seed demo and the rank explorer (default 512, the "
                             "seed's)")
    parser.add_argument("--threads", type=thread_count, default=0, metavar="N",
                        help="torch CPU threads (default 0: one thread for the tiny "
                             "fine-tuning models of both presets, torch's default, one per "
                             "core, for larger ones; see loralab.threads)")
    parser.add_argument("--no-analyses", action="store_true",
                        help="skip the low-rank analyses and the merge methods "
                             "(chapters 7.1-7.4 and 7.6)")
    parser.add_argument("--no-finetune", action="store_true",
                        help="skip the fine-tuning experiment (chapter 7.5)")
    parser.add_argument("--finetune", default=None, metavar="DIR", dest="finetune_dir",
                        help="show an earlier 'loralab finetune --out DIR' in chapter 7.5 "
                             "(its preset, methods and figures) instead of running the "
                             "experiment")
    parser.add_argument("--study", action="append", default=None, metavar="DIR",
                        dest="study_dirs",
                        help="also show the study in an earlier 'loralab finetune --study "
                             "NAME --out DIR' (table, figure, verdicts) in chapter 7.5; "
                             "repeat for each study")


def run(args: argparse.Namespace) -> int:
    """Check the output folder, compute, render, write atomically, print a summary."""
    import sys
    import time

    from .. import plots
    from ..report.build import ReportConfig, build_report, check_report_dir, collect_report
    from ..threads import torch_threads

    config = ReportConfig(preset=args.preset, lang=args.lang, seed=args.seed,
                          hidden_size=args.hidden_size,
                          analyses=not args.no_analyses, finetune=not args.no_finetune,
                          finetune_dir=args.finetune_dir,
                          study_dirs=tuple(args.study_dirs or ()))
    check_report_dir(args.out, force=args.force)     # fail before any computation
    if args.finetune_dir is not None:
        from ..report.methods import read_finetune_result

        read_finetune_result(args.finetune_dir)      # readable before any computation
    if args.study_dirs:
        from ..report.studies import read_study_results

        read_study_results(tuple(args.study_dirs))   # each a study, before any computation
    bar = None

    def on_stage(name: str) -> None:
        print(f"report: {STAGES[name]}", file=sys.stderr, flush=True)

    def on_steps(label: str, steps: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from ._progress import progress_bar

            bar = progress_bar(total, file=sys.stderr)
        bar.set_description(label, refresh=False)
        bar.update(steps)

    start = time.perf_counter()
    try:
        with torch_threads(_threads(args)):          # restored afterwards
            data = collect_report(config, on_stage=on_stage, on_steps=on_steps)
    finally:
        if bar is not None:
            bar.close()
    path = build_report(config, args.out, data=data, force=args.force)
    total = time.perf_counter() - start
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in data.seconds.items())
    size = path.stat().st_size
    print(f"saved {path} ({size / 2**20:.2f} MiB) in {total:.1f} s ({parts})")
    missing = [k for k, ext in data.extensions.items() if ext.missing]
    if missing:
        print(f"not in this report: {', '.join(missing)} "
              f"({data.extensions[missing[0]].missing})")
    if args.lang == "zh" and data.cjk_font is None:
        print(plots.CJK_FONT_HINT)
    return 0


def _threads(args: argparse.Namespace) -> int:
    """``--threads N``, or for 0 the default rule (:func:`loralab.threads.resolve_threads`)
    on the largest matrix of the preset's fine-tuning model."""
    from ..experiment.presets import PRESETS
    from ..threads import resolve_threads

    m = PRESETS[args.preset].model
    largest = max(m.d_ff * m.d_model, m.vocab_size * m.d_model, m.block_size * m.d_model)
    return resolve_threads(args.threads, largest)
