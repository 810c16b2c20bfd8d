"""A rank and α per module, from measurement, then checked against uniform rank.

Probes the base on your data (--probe grad: the gradient of each target weight summed over
--probe-steps batches; --probe full: the update after --probe-steps steps of full
fine-tuning), takes each target module's spectrum, and gives each module the rank that keeps
--energy of it (or, with --budget, the ranks that keep the most energy within that many
trainable parameters), with α keeping every module at the uniform run's scale α/r. Writes
--out/adapter_config.json (PEFT's rank_pattern/alpha_pattern: peft.LoraConfig and loralab
both read it) and advice.json. Then it checks its own advice: LoRA with the pattern against
LoRA at one uniform rank with the same trainable-parameter count (within a few %), the same
steps, batches and seed, and prints both val losses (--no-check skips it).

example:
  loralab advise --preset quick --targets attn+mlp --energy 0.9
  loralab advise --model smollm2 --data builtin:lunyu --targets attn --budget 400000 --steps 10
"""

from __future__ import annotations

import argparse

from ._args import float_in, int_in, positive_int, seed_int, thread_count

HELP = "a rank and alpha per module from the spectra of a probe, checked against uniform rank"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags: model, data, preset, targets, probe, energy or budget, check, out, device."""
    parser.add_argument("--model", default=None, metavar="PATH_OR_ID",
                        help="a causal LM as for finetune: a transformers folder, a .gguf, "
                             "smollm2 (built in) or a hub id (default: the tiny LM)")
    parser.add_argument("--data", default=None, metavar="PATH",
                        help="the text, as finetune's --data (default: the Pig Latin task)")
    parser.add_argument("--preset", choices=("quick", "default", "smollm2"), default="quick",
                        help="sizes, schedules and learning rates (default quick)")
    parser.add_argument("--targets", default="attn+mlp", metavar="SET",
                        help="one target set: module names or presets joined by + (default "
                             "attn+mlp)")
    parser.add_argument("--probe", choices=("grad", "full"), default="grad",
                        help="grad: summed gradients at the base (cheaper); full: the update "
                             "of a short full fine-tuning (default grad)")
    parser.add_argument("--probe-steps", type=int_in(1, 10_000, "--probe-steps"), default=8,
                        metavar="N", help="the probe's batches or steps, 1..10000 (default 8)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--energy", type=float_in(0.0, 0.999999, lo_open=True,
                                               what="--energy"), default=None, metavar="E",
                     help="each module keeps this share of its spectrum's energy, in (0, 1) "
                          "(default 0.9)")
    how.add_argument("--budget", type=int_in(1, 10**12, "--budget"), default=None, metavar="N",
                     help="trainable parameters to spend instead (rank 1 everywhere .. full "
                          "rank on the targets)")
    parser.add_argument("--no-check", action="store_true",
                        help="write the advice without training the two check runs")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="N",
                        help="steps of each check run (default: the preset's)")
    parser.add_argument("--batch", type=positive_int, default=None, metavar="N",
                        help="sequences per step (default: the preset's)")
    parser.add_argument("--lora-alpha", type=float_in(0.0, 1e6, lo_open=True, what="α"),
                        default=16.0, metavar="A",
                        help="α of the uniform run (default 16); the pattern keeps its scale")
    parser.add_argument("--out", default="advice_out", metavar="DIR",
                        help="output folder (created; it may only hold what an earlier advise "
                             "wrote; default ./advice_out)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CUDA when present (default auto)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="where bases are cached (default $LORALAB_CACHE or ~/.cache/loralab)")
    parser.add_argument("--threads", type=thread_count, default=0, metavar="N",
                        help="torch CPU threads (default 0: torch's default)")
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")


def _format(advice: object) -> str:
    """The per-module table and the check, as printed."""
    lines = [f"{'module':<40} {'shape':>11} {'rank':>5} {'alpha':>7} {'energy kept':>12}"]
    for m in advice.modules:
        lines.append(f"{m.path:<40} {f'{m.d_out}x{m.d_in}':>11} {m.rank:>5} {m.alpha:>7.3g} "
                     f"{m.energy_kept:>12.1%}")
    lines.append(f"uniform rank of the same count: r={advice.uniform_rank}, "
                 f"alpha={advice.lora_alpha:g}")
    c = advice.check
    if c is not None:
        verdict = "the advice beat uniform rank" if c.advice_wins else \
            "the advice did NOT beat uniform rank"
        lines += [f"check ({c.steps} steps each, base val loss {c.base_val_loss:.4f}):",
                  f"  uniform r={c.uniform_rank}: {c.uniform_params:,} trainable, "
                  f"val loss {c.uniform_val_loss:.4f}",
                  f"  advised pattern: {c.advised_params:,} trainable "
                  f"({c.param_ratio - 1:+.1%}), val loss {c.advised_val_loss:.4f}",
                  f"  {verdict} ({c.advised_val_loss - c.uniform_val_loss:+.4f})"]
    lines.append(f"wall time {advice.wall_s:.1f} s (loading the base and the probe: "
                 f"{advice.probe_wall_s:.1f} s)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Check everything, claim --out, advise, print, write."""
    import json

    from ..experiment.advise import advise
    from ..fileio import atomic_write_text, check_output_folder, output_folder, require_finite
    from ..results import RunOptions
    from ..results.advice import AdviceConfig
    from ..threads import torch_threads

    config = AdviceConfig(preset=args.preset, model=args.model, data=args.data,
                          targets=args.targets, probe=args.probe, probe_steps=args.probe_steps,
                          energy=args.energy, budget=args.budget, check=not args.no_check,
                          steps=args.steps, batch=args.batch, lora_alpha=args.lora_alpha,
                          seed=args.seed)
    options = RunOptions(device=args.device, cache_dir=args.cache)
    check_output_folder(args.out, "advise")               # before any work, creating nothing
    with torch_threads(args.threads or None):
        advice = advise(config, options)
    data = advice.to_dict()
    require_finite(data, "the advice's", "lower the learning rate or the probe steps")
    print(_format(advice))
    with output_folder(args.out, "advise") as folder:
        staged = folder.staging()
        atomic_write_text(staged / "adapter_config.json",
                          json.dumps(advice.adapter_config, indent=2) + "\n")
        atomic_write_text(staged / "advice.json", json.dumps(data, indent=2) + "\n")
        folder.commit(staged)
    print(f"wrote {args.out}/adapter_config.json and advice.json")
    return 0
