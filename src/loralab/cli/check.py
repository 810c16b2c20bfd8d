"""Check a PEFT-format adapter against its base, end to end, for a user's CI.

Reads ADAPTER (adapter_config.json + adapter_model.safetensors) and the base (--model: a
folder, a hub id, a .gguf file or the built-in smollm2) and reports: every key used, unused or
missing (shapes, dtypes, NaN/Inf); rank, alpha and scale per module, the layers and
modules_to_save touched; saved embeddings and the vocabulary against the base's (the resize
needed); tied embeddings kept tied or not; a PiSSA/OLoRA/LoftQ init converted or not; the
largest logit difference on a sample text at each stage (loaded, merged, unloaded, saved and
reloaded, merged into an NF4 base against float32, PEFT's logits against loralab's); and the
documented limits of vLLM and llama.cpp the adapter runs into, with their sources.

Exit code: 0 when the adapter on this base is what was trained, 1 with the findings (NaN/Inf,
unused or missing keys, another vocabulary size, an unconverted init, broken ties, a stage
beyond float32 rounding), 2 for bad input. Rounding (a float32 merge, NF4 requantization) is
reported with its size, never a finding.

example:
  loralab check runs/adapters/lora-r4-attn --model smollm2
  loralab check ./my-adapter --model ./base-folder --text "a sample" --json check.json
"""

from __future__ import annotations

import argparse

from ._args import add_json_option

HELP = "check an adapter against its base: keys, vocabulary, ties, init, logits per stage"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """ADAPTER, --model, --text, --cache, --json."""
    parser.add_argument("adapter", metavar="ADAPTER",
                        help="a PEFT-format adapter folder (adapter_config.json and "
                             "adapter_model.safetensors)")
    parser.add_argument("--model", required=True, metavar="BASE",
                        help="the base: a transformers folder, a hub id (online), a .gguf file "
                             "or the built-in smollm2")
    parser.add_argument("--text", default=None,
                        help="the sample text the logits are compared on (default: a built-in "
                             "sentence; the first 32 tokens are used)")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="where a .gguf or smollm2 base's float32 copy is cached (default "
                             "$LORALAB_CACHE or ~/.cache/loralab)")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    """Check the inputs (bad input: exit 2, nothing written), measure, print, save."""
    from ..experiment.check import prepare_check, run_check
    from ..experiment.check_table import format_check
    from ..fileio import atomic_write_json, check_output_file, output_files

    if args.json:
        check_output_file(args.json, flag="--json")
    inputs = prepare_check(args.adapter, args.model, args.text, args.cache)
    with output_files({"--json": args.json}, "check"):
        report = run_check(inputs)
        print(format_check(report))
        if args.json:
            print(f"saved {atomic_write_json(args.json, report.to_dict())}")
    return 0 if report.ok else 1
