"""Parity with PEFT 0.21 for the layer types and full-weight adapters of issue 26, measured:
max |Δoutput| (fp32) per case and direction, and merged against unmerged.

The tests assert each stays under its tolerance (1e-5 of the largest |output|):
tests/lora/test_layer_types_peft.py (Conv1d/2d/3d, grouped convolutions, DoRA on Embedding
and convolutions), tests/lora/test_full_weights.py (save_embedding_layers),
tests/lora/test_tokens.py (trainable_token_indices, ensure_weight_tying). This script prints
the values themselves, on the same tiny random-init models and trained-like adapters (every
trainable tensor moved by N(0, 0.2²)). The last rows are PEFT's own merge_and_unload on the
two tied cases where it differs from its unmerged output.

    PYTHONPATH=src .venv/bin/python benchmarks/parity_layers.py
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lora"))
warnings.simplefilter("ignore")

import peft  # noqa: E402
import test_full_weights as fw  # noqa: E402
import torch  # noqa: E402
from peft_parity import conv_net3, from_peft, max_diff, merge_checks, out, to_peft  # noqa: E402
from test_full_weights import CASES as FULL_CASES  # noqa: E402
from test_layer_types_peft import CASES as LAYER_CASES  # noqa: E402
from test_tokens import CASES as TOKEN_CASES  # noqa: E402
from test_tokens import _fields, llama, logits  # noqa: E402

from loralab.lora import (  # noqa: E402  # noqa: E402
    AdapterConfig,
    inject_lora,
    load_adapter,
    merge_lora,
    save_adapter,
    unload_lora,
    unmerge_lora,
)


def _row(case: str, direction: str, diff: float, ref: torch.Tensor) -> None:
    print(f"| {case} | {direction} | {diff:.2e} | {1e-5 * max(1.0, float(ref.abs().max())):.1e} |")


def layer_rows(tmp: Path) -> None:
    for name, extra in [*LAYER_CASES, ("grouped Conv2d (groups=2) + Conv3d",
                                      {"target_modules": ["c2", "c3"], "groups": 2})]:
        fields = {"r": 4, "lora_alpha": 8, **copy.deepcopy(extra)}
        groups = fields.pop("groups", 1)
        make = (lambda: conv_net3(groups=2)) if groups > 1 else conv_net3  # noqa: E731
        diff, _, theirs = from_peft(make, fields, tmp / f"{name}-p")
        _row(name, "PEFT → loralab", diff, out(theirs))
        diff, ours, _ = to_peft(make, fields, tmp / f"{name}-o")
        y = out(ours)
        _row(name, "loralab → PEFT", diff, y)
        if groups == 1:
            merged, restored = merge_checks(ours)
            _row(name, "merged vs unmerged", merged, y)
            _row(name, "unmerge restores W0", restored, torch.ones(1))


def full_weight_rows(tmp: Path) -> None:
    for name, tie, targets, ids, _ in FULL_CASES:
        base = fw._base(tmp / f"base-{tie}", tie)
        theirs = peft.get_peft_model(fw._model(base, 1), peft.LoraConfig(
            **fw._fields(name, targets)))
        _train(theirs)
        theirs.save_pretrained(tmp / f"{name}-p")
        ours = fw._model(base, 2)
        load_adapter(ours, tmp / f"{name}-p")
        ref = fw._logits(theirs, ids)
        _row(f"save_embedding_layers: {name}", "PEFT → loralab",
             max_diff(fw._logits(ours, ids), ref), ref)
        mine = fw._model(base, 3)
        inject_lora(mine, AdapterConfig(**fw._fields(name, targets)))
        _train(mine)
        save_adapter(mine, tmp / f"{name}-o")
        back = peft.PeftModel.from_pretrained(fw._model(base, 4), tmp / f"{name}-o").eval()
        y = fw._logits(mine, ids)
        _row(f"save_embedding_layers: {name}", "loralab → PEFT",
             max_diff(fw._logits(back, ids), y), y)


MISMATCH = ("tokens on embedding and head, tied (different ids)", True,
            {"trainable_token_indices": {"embed_tokens": [60, 61], "lm_head": [60, 62]}})


def token_rows(tmp: Path) -> None:
    for name, tie, extra in [*TOKEN_CASES, MISMATCH]:
        theirs = peft.get_peft_model(llama(tie), peft.LoraConfig(**_fields(extra)))
        torch.manual_seed(1)
        _train(theirs)
        theirs.save_pretrained(tmp / f"{name}-p")
        ours = llama(tie)
        load_adapter(ours, tmp / f"{name}-p")
        _row(name, "PEFT → loralab", max_diff(logits(ours), logits(theirs)), logits(theirs))
        mine = llama(tie)
        inject_lora(mine, AdapterConfig(**_fields(extra)))
        _train(mine)
        save_adapter(mine, tmp / f"{name}-o")
        back = peft.PeftModel.from_pretrained(llama(tie), tmp / f"{name}-o").eval()
        y = logits(mine)
        _row(name, "loralab → PEFT", max_diff(logits(back), y), y)
        try:
            merge_lora(mine)
            _row(name, "merged vs unmerged", max_diff(logits(mine), y), y)
            unmerge_lora(mine)
            unload_lora(mine)
        except Exception as exc:  # noqa: BLE001 (the refusal is the row)
            print(f"| {name} | merged vs unmerged | refused: {str(exc)[:60]}… | |")
        if tie and ("target_modules" in extra or name == MISMATCH[0]):
            ref = logits(theirs)
            _row(name, "PEFT's own merge_and_unload vs unmerged",
                 max_diff(logits(theirs.merge_and_unload()), ref), ref)


def _train(model: torch.nn.Module) -> None:
    from peft_parity import train_like

    train_like(model)


def main() -> None:
    print("| case | direction | max abs diff | tolerance |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        layer_rows(Path(tmp))
        full_weight_rows(Path(tmp))
        token_rows(Path(tmp))


if __name__ == "__main__":
    main()
