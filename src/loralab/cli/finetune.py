"""Fine-tune a causal LM: full fine-tuning vs LoRA (and its variants) at several ranks.

By default pretrains a tiny GPT on generated English (cached) and fine-tunes it on Pig Latin
with full fine-tuning and with LoRA at each rank on each target set (plus rsLoRA at the
larger ranks); --methods adds DoRA, LoRA+, PiSSA, OLoRA, QLoRA and LoftQ at the same ranks
and targets; --data fine-tunes on your text (the tiny LM then reads bytes), --model on your
transformers model (its own tokenizer; --targets are its module names). Prints the plan's
memory estimate, then the results table, the bridge to the SVD (the full update's spectrum,
ΔW_full truncated to rank r vs LoRA at rank r, the amplification factor, α/r vs α/√r), the
method comparison and sample generations. Writes into --out: results.md, results.json,
samples.txt, the figures (convergence.png, bridge.png, cost.png; methods.png and
magnitude_direction.png when those methods ran) and adapters/<run>/ (PEFT format). --out may
only hold what an earlier finetune wrote there (listed in its .loralab-manifest.json); that
run's files not written again are removed, and a second run into the same folder is refused.
--study lr (learning rates) or --study placement (attention, MLP, all layers at equal
parameters) runs a study instead: its table and verdicts first, and its figure.

Ctrl-C saves a checkpoint; the same command resumes. Under
`torchrun --nproc_per_node=N -m loralab finetune ...` it trains with DDP (gloo on CPU,
nccl on CUDA) and rank 0 writes the outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._args import add_json_option, job_count, positive_int, rank_list, seed_int, thread_count

if TYPE_CHECKING:
    import torch
    from tqdm import tqdm

    from ..lm.dist import DistContext
    from ..results import ExperimentConfig, ExperimentResult, RunOptions
    from ..results.intruders import IntruderSettings
    from ..results.study_plan import StudyConfig

HELP = "full fine-tuning vs LoRA on a tiny LM (table, figures, samples, adapters)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags: preset, methods, ranks, targets, out, json, device, bf16, seed, cache, threads."""
    from ..choices import BUILTIN_TEXTS, DEFAULT_METHODS, METHOD_HELP

    parser.add_argument("--preset", choices=("quick", "default", "smollm2"), default="default",
                        help="quick: ~15 s, a 2-layer d=64 model (the tests'); default: minutes, "
                             "a 4-layer d=128 model; smollm2: the real SmolLM2-135M on "
                             "Classical Chinese, forgetting on Shakespeare, ~20 minutes")
    parser.add_argument("--methods", type=_method_list, default=None, metavar="M,M,..",
                        help="methods to run, comma-separated (default "
                             f"{','.join(DEFAULT_METHODS)}; smollm2: full,lora,qlora,dora): "
                             + "; ".join(f"{k}: {v}" for k, v in METHOD_HELP.items()))
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="fine-tune on this text instead of Pig Latin: a UTF-8 .txt file, "
                             "a folder of them, a .jsonl with a 'text' field, or builtin:NAME ("
                             + ", ".join(f"{k}: {v}" for k, v in BUILTIN_TEXTS.items()) + ")")
    parser.add_argument("--model", default=None, metavar="PATH_OR_ID",
                        help="a causal LM instead of the tiny LM: a transformers folder, a "
                             ".gguf file, smollm2 (built in, offline) or a hub id; --targets "
                             "are its module names, e.g. c_attn (GPT-2) or q_proj+v_proj")
    parser.add_argument("--revision", default=None, metavar="REV",
                        help="hub revision (branch, tag or commit) of a --model hub id")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="N",
                        help="fine-tuning steps of every run (default: the preset's)")
    parser.add_argument("--batch", type=positive_int, default=None, metavar="N",
                        help="sequences per fine-tuning step (default: the preset's, 16)")
    parser.add_argument("--ranks", type=rank_list, default=None, metavar="R,R,..",
                        help="LoRA ranks, each 1..d_model (default 1,2,4,8,16; smollm2: 4,16)")
    parser.add_argument("--targets", nargs="+", default=None, metavar="SET",
                        help="target sets, each module names or presets joined by + or , "
                             "(attn = q_proj+k_proj+v_proj+o_proj, mlp = up_proj+down_proj, "
                             "all); default: attn attn+mlp (smollm2: attn all)")
    parser.add_argument("--out", default="finetune_out", metavar="DIR",
                        help="output folder (created if missing; it may only hold what an "
                             "earlier finetune wrote there; default ./finetune_out)")
    add_json_option(parser)
    _add_study_arguments(parser)
    _add_run_options(parser)


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags: study, lrs."""
    from ..choices import STUDIES

    parser.add_argument("--study", choices=tuple(STUDIES), default=None,
                        help="run a study instead of the experiment (methods full and lora; "
                             "default ranks, steps and targets are the study's): "
                             + "; ".join(f"{k}: {v}" for k, v in STUDIES.items()))
    parser.add_argument("--lrs", type=_lr_list, default=None, metavar="LR,LR,..",
                        help="the lr study's learning rates, each a finite number > 0 "
                             "(default 1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1; a --model: "
                             "2e-5,2e-4,2e-3)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Flags that change how the runs go, never their numbers (device, bf16, seed, cache,
    threads, jobs, fsdp, grad-checkpointing, no-progress)."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when present, else CPU (default auto)")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast for matmuls (weights and optimizer stay fp32)")
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="where the pretrained base is cached (default $LORALAB_CACHE "
                             "or ~/.cache/loralab)")
    parser.add_argument("--threads", type=thread_count, default=0, metavar="N",
                        help="torch CPU threads (default 0: the free cores, i.e. the cores "
                             "less the 1-minute load, for pretraining and for runs one after "
                             "another; one per process when runs go side by side)")
    parser.add_argument("--jobs", type=job_count, default=0, metavar="N",
                        help="runs trained side by side, one process each, on a CPU (default "
                             "0: one per free core for the tiny LM, one for a --model; 1: one "
                             "after another); the same numbers either way")
    parser.add_argument("--fsdp", action="store_true",
                        help="under torchrun: shard each run's model with FSDP2 (fully_shard) "
                             "instead of DDP, for a model too big for one device (methods "
                             "full, lora, rslora; Ctrl-C keeps only finished runs)")
    parser.add_argument("--grad-checkpointing", action="store_true",
                        help="recompute activations in the backward: less memory, more time, "
                             "the same numbers")
    _add_late_arguments(parser)


def _add_late_arguments(parser: argparse.ArgumentParser) -> None:
    """The last flags: the progress bar; the intruder analysis's top-k, ε and λs."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--intruder-top-k", type=positive_int, default=10, metavar="K",
                        help="intruder dimensions: the top K singular vectors of each "
                             "fine-tuned matrix compared with the pretrained ones (default "
                             "10, PEFT's; at most each matrix's rank)")
    parser.add_argument("--intruder-epsilon", type=float, default=0.5, metavar="EPS",
                        help="a top vector whose best |cos| with the pretrained ones is below "
                             "EPS is an intruder; in (0, 1] (default 0.5, PEFT's)")
    parser.add_argument("--intruder-lambdas", type=_float_list, default=(0.75, 0.5, 0.25),
                        metavar="L,L,..", help="the mitigation's scales of the intruder "
                        "directions, each in (0, 1] (default 0.75,0.5,0.25; 0.75 is PEFT's)")


def _method_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated methods such as ``full,lora,dora`` (each known)."""
    from ..choices import METHODS

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r} holds no method; give e.g. full,lora,dora")
    for p in parts:
        if p not in METHODS:
            raise argparse.ArgumentTypeError(f"method {p!r} is not allowed; choose from "
                                             f"{', '.join(METHODS)}")
    return tuple(dict.fromkeys(parts))


def _float_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated numbers such as ``0.75,0.5`` (ranges: the config)."""
    try:
        out = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers; give e.g. "
                                         "0.75,0.5") from None
    if not out:
        raise argparse.ArgumentTypeError(f"{text!r} holds no number; give e.g. 0.75,0.5")
    return out


def _intruder_settings(args: argparse.Namespace, config: ExperimentConfig
                       ) -> IntruderSettings:
    """The intruder analysis's settings from the flags, checked (a tiny LM's matrices: top-k
    at most d_model; a transformers model's: once loaded)."""
    from ..errors import LoralabError
    from ..results.intruders import IntruderSettings

    s = IntruderSettings(top_k=args.intruder_top_k, epsilon=args.intruder_epsilon,
                         lambdas=tuple(args.intruder_lambdas))
    d = config.spec.model.d_model
    if config.model is None and s.top_k > d:
        raise LoralabError(f"--intruder-top-k {s.top_k} is not allowed; the {config.preset} "
                           f"preset's matrices have rank at most d_model={d}")
    return s


def _lr_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated learning rates such as ``1e-4,1e-3`` (each a finite
    number > 0)."""
    import math

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r} holds no learning rate; give e.g. "
                                         "1e-4,1e-3,1e-2")
    lrs = []
    for p in parts:
        try:
            lr = float(p)
        except ValueError:
            raise argparse.ArgumentTypeError(f"learning rate {p!r} is not a number; give e.g. "
                                             "1e-4,1e-3,1e-2") from None
        if not (math.isfinite(lr) and lr > 0):
            raise argparse.ArgumentTypeError(f"learning rate {p!r} is not allowed; each must "
                                             "be a finite number > 0")
        lrs.append(lr)
    return tuple(lrs)


def _config(args: argparse.Namespace
            ) -> tuple[ExperimentConfig, RunOptions, StudyConfig | None]:
    """What to compute and how to run it, from the flags (each checks its fields); with
    ``--study``, the study and the config as it runs it (:meth:`StudyConfig.prepare`)."""
    from ..choices import DEFAULT_METHODS
    from ..results import ExperimentConfig, RunOptions
    from ..results.presets import PRESETS

    real = PRESETS[args.preset].real
    study = _study(args)
    methods = args.methods or (real.methods if real else DEFAULT_METHODS)
    ranks = args.ranks or (real.ranks if real else (1, 2, 4, 8, 16))
    targets = args.targets or (real.targets if real else ("attn", "attn+mlp"))
    steps = args.steps
    if study is not None:
        from ..results.study_plan import REAL_STUDY_RANKS, STUDY_RANKS, STUDY_STEPS

        tiny = real is None and args.model is None
        ranks = args.ranks or (STUDY_RANKS if tiny else REAL_STUDY_RANKS)[study.name]
        if steps is None and tiny:
            steps = STUDY_STEPS[study.name]
    config = ExperimentConfig(preset=args.preset, methods=tuple(methods),
                              ranks=tuple(ranks), targets=tuple(targets),
                              seed=args.seed, bf16=args.bf16, data=args.data,
                              model=args.model, revision=args.revision, steps=steps,
                              batch=args.batch)
    options = RunOptions(device=args.device, cache_dir=args.cache, fsdp=args.fsdp,
                         grad_checkpointing=args.grad_checkpointing, jobs=args.jobs,
                         threads=args.threads)
    return config if study is None else study.prepare(config), options, study


def _study(args: argparse.Namespace) -> StudyConfig | None:
    """The ``--study`` asked for (checked), or ``None``; ``--lrs`` without ``--study lr``
    and ``--methods`` with a study are refused."""
    from ..errors import LoralabError

    if args.study is None:
        if args.lrs is not None:
            raise LoralabError("--lrs is not allowed without --study lr; it is the lr "
                               "study's grid")
        return None
    if args.methods is not None:
        raise LoralabError(f"--methods is not allowed with --study {args.study}; a study "
                           "runs full fine-tuning and LoRA")
    from ..results.study_plan import StudyConfig

    return StudyConfig(args.study, args.lrs)


def _preflight(args: argparse.Namespace, config: ExperimentConfig,
               options: RunOptions) -> None:
    """Everything that can be checked before any work, creating nothing in ``--out``: the
    plan (:func:`loralab.experiment.check_plan`), the outputs (distinct, ``--json`` outside
    ``--out``, the folder holds only an earlier finetune's files and no run is writing
    there), the device and the cache."""
    from ..errors import LoralabError
    from ..experiment.base import base_path, check_cache
    from ..experiment.config import check_plan
    from ..experiment.resume import check_out_dir
    from ..fileio import check_distinct, check_output_file, check_replaceable
    from ..lm.dist import resolve_device

    if not str(args.out).strip():                 # as demo and report refuse it
        raise LoralabError("--out '' is empty; give the output folder's name, e.g. "
                           "--out finetune")

    check_plan(config, options)
    out = Path(args.out)
    check_distinct({"--out": out, "--json": args.json})
    cache = base_path(config, options)
    inside = [(flag, p) for flag, p in (("--json", args.json), ("--cache", cache))
              if p is not None and _inside(p, out)]
    if inside:
        flag, p = inside[0]
        raise LoralabError(f"{flag} {str(p)!r} is inside --out {str(out)!r}, which holds only "
                           "what finetune writes there; give a path outside it")
    if args.json:
        check_output_file(args.json, flag="--json")
        check_replaceable(args.json, f"--json {str(args.json)!r}", force=args.force)
    check_out_dir(out)
    try:
        resolve_device(args.device)
    except LoralabError as exc:
        raise LoralabError(f"--device {args.device}: {exc}") from None
    check_cache(config, options)


def _inside(path: str | Path, folder: Path) -> bool:
    import os

    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _progress_bar(args: argparse.Namespace, dist: DistContext,
                  config: ExperimentConfig, study: StudyConfig | None = None) -> tqdm | None:
    """A tqdm bar over every training step of the experiment (rank 0 only), or ``None``."""
    from ..experiment.driver import total_steps

    if not dist.is_main or args.no_progress:
        return None
    from ._progress import progress_bar

    return progress_bar(total_steps(config, study), desc="finetune", file=sys.stderr)


def _run_with_bar(config: ExperimentConfig, options: RunOptions, out: Path, dist: DistContext,
                  bar: tqdm | None, study: StudyConfig | None = None,
                  intruders: IntruderSettings | None = None) -> ExperimentResult:
    """Run the experiment, advancing ``bar``; on Ctrl-C say how to resume and re-raise."""
    from ..experiment.driver import run_experiment
    from ..experiment.resume import resume_hint

    def progress(label: str, steps: int) -> None:
        if bar is not None:
            bar.set_description(label, refresh=False)
            bar.update(steps)

    def on_plan(lines: list[str]) -> None:          # stdout, with the results (stderr: bar)
        for line in lines:
            if bar is not None:
                bar.write(line, file=sys.stdout)
            else:
                print(line, flush=True)

    try:
        return run_experiment(config, options, out_dir=out, dist=dist, progress=progress,
                              on_plan=on_plan, study=study, intruders=intruders)
    except KeyboardInterrupt as exc:
        if bar is not None:
            bar.close()
        if dist.is_main:
            print(resume_hint(exc, out, config), file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()


def _report(result: ExperimentResult, args: argparse.Namespace, out: Path,
            device: torch.device, dist: DistContext) -> None:
    """Print the tables, samples and what was saved; write ``--json``."""
    from ..experiment.study_tables import study_lines
    from ..experiment.tables import format_samples, format_tables
    from ..fileio import atomic_write_json

    for line in study_lines(result):                # a study's table and verdicts first
        print(line)
    print(format_tables(result))
    print()
    print(format_samples(result))
    print(f"\nwall time {result.wall_s:.1f} s on {device}"
          f"{f' × {dist.world_size} processes' if dist.world_size > 1 else ''}"
          f"; base {'loaded from' if result.base.cached else 'pretrained and cached in'} "
          f"{result.base.path}")
    figures = sorted(p.name for p in out.glob("*.png"))
    print(f"saved {out}/results.md, results.json, samples.txt, {', '.join(figures)}, "
          "adapters/")
    if args.json:
        atomic_write_json(args.json, result.to_dict())
        print(f"saved {args.json}")


def run(args: argparse.Namespace) -> int:
    """Validate everything, run the experiment (resuming if interrupted before), print, save."""
    import contextlib
    import os

    from ..fileio import output_files
    from ..lm.dist import init_distributed

    config, options, study = _config(args)
    intruders = _intruder_settings(args, config)
    _preflight(args, config, options)
    from ..threads import set_threads

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))   # torchrun: share the cores
    set_threads(args.threads, processes=local)
    main = int(os.environ.get("RANK", "0")) == 0
    with (output_files({"--json": args.json}, "finetune", force=args.force) if main
          else contextlib.nullcontext()):
        dist, device = init_distributed(args.device, "fsdp" if args.fsdp else "ddp")
        bar = _progress_bar(args, dist, config, study)
        out = Path(args.out)
        result = _run_with_bar(config, options, out, dist, bar, study, intruders)
        if dist.is_main:
            _report(result, args, out, device, dist)
    if dist.world_size > 1:
        import torch.distributed

        dist.barrier()      # tear down together: a peer's early exit can abort gloo's threads
        torch.distributed.destroy_process_group()
    return 0
