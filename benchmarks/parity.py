"""Parity with PEFT, measured: max |Δlogits| (fp32) for each feature and direction.

The tests (tests/lora/test_variants.py, test_qlora.py) assert these stay under their
tolerance; this script prints the values themselves, on the same tiny random-init models
(Llama d=32 and GPT-2 d=32 for the variants, Llama d=64 loaded in 4-bit NF4 through
transformers' BitsAndBytesConfig for QLoRA), trained-like adapters (every trainable tensor
moved by N(0, 0.2²)), 2 × 12 tokens.

    .venv/bin/python benchmarks/parity.py [--merge-only]

``--merge-only``: only the add_weighted_adapter and shrink rows.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "lora"))

import peft  # noqa: E402
import torch  # noqa: E402
from test_qlora import QV, llama64, load4  # noqa: E402
from test_qlora import logits as logits4  # noqa: E402
from test_transformers import gpt2, llama, logits, train_like  # noqa: E402
from test_variants import two_adapters  # noqa: E402
from test_weighted import MODELS, SEED, pair  # noqa: E402

from loralab.lora import (  # noqa: E402
    AdapterConfig,
    add_weighted_adapter,
    disable_adapters,
    inject_lora,
    load_adapter,
    merge_lora,
    save_adapter,
    set_adapter,
    unload_lora,
)
from loralab.lora.shrink import shrink_adapter  # noqa: E402
from loralab.lora.weighted import COMBINATIONS  # noqa: E402

ROWS: list[tuple[str, str, float]] = []


def row(case: str, direction: str, diff: torch.Tensor | float) -> None:
    ROWS.append((case, direction, float(diff)))


def named_adapters() -> None:
    ours, theirs = two_adapters()
    for name in ("default", "other"):
        set_adapter(ours, name)
        theirs.set_adapter(name)
        row(f"set_adapter({name!r})", "loralab vs PEFT",
            (logits(ours, llama) - logits(theirs, llama)).abs().max())
    base = logits(llama(), llama)
    with disable_adapters(ours):
        row("disable_adapters", "loralab vs the base", (logits(ours, llama) - base).abs().max())
    for combo, adapters, weights in (("linear", ["default", "default"], [0.7, 0.5]),
                                     ("cat", ["default", "other"], [0.7, -0.4]),
                                     ("svd", ["default", "other"], [0.7, -0.4])):
        a, b = two_adapters()
        add_weighted_adapter(a, adapters, weights, "mix", combination_type=combo)
        b.add_weighted_adapter(adapters, weights, "mix", combination_type=combo)
        set_adapter(a, "mix")
        b.set_adapter("mix")
        row(f"add_weighted_adapter {combo}", "loralab vs PEFT",
            (logits(a, llama) - logits(b, llama)).abs().max())


def peft_reseeded(theirs, *args, **kwargs) -> None:
    """PEFT's add_weighted_adapter with torch's generator reseeded where its DARE draws start
    (right after ``_freeze_adapter``), as tests/lora/test_weighted.py does."""
    import peft.tuners.lora.model as peft_model

    freeze = peft_model._freeze_adapter

    def freeze_then_seed(*a, **k):
        freeze(*a, **k)
        torch.manual_seed(SEED)

    peft_model._freeze_adapter = freeze_then_seed
    try:
        theirs.add_weighted_adapter(*args, **kwargs)
    finally:
        peft_model._freeze_adapter = freeze


def merge_methods() -> None:
    """Every combination but cat/linear/svd (above), on Llama (Linear) and GPT-2 (Conv1D +
    Embedding), weights 0.7 and -0.4, density 0.5: the new adapter's logits."""
    for model in MODELS:
        make = MODELS[model][0]
        for combo in COMBINATIONS:
            if combo in ("linear", "cat", "svd"):
                continue
            ours, theirs = pair(model, r_b=2 if combo.endswith("svd") else 4)
            kw = {"density": 0.5}
            add_weighted_adapter(ours, ["one", "two"], [0.7, -0.4], "mix", combination_type=combo,
                                 generator=torch.Generator().manual_seed(SEED), **kw)
            peft_reseeded(theirs, ["one", "two"], [0.7, -0.4], "mix", combination_type=combo,
                          **kw)
            set_adapter(ours, "mix")
            theirs.set_adapter("mix")
            row(f"add_weighted_adapter {combo}, {model}", "loralab vs PEFT",
                (logits(ours, make) - logits(theirs, make)).abs().max())


def shrink(tmp: Path) -> None:
    """A shrunk adapter in PEFT: at full rank its logits against the original's."""
    for name, make, fields in (("Llama q,v + embedding", llama,
                                {"target_modules": ["q_proj", "v_proj", "embed_tokens"]}),
                               ("GPT-2 Conv1D", gpt2, {"target_modules": ["c_attn"],
                                                       "fan_in_fan_out": True})):
        ours = make()
        inject_lora(ours, AdapterConfig(r=8, lora_alpha=16, **fields))
        train_like(ours)
        save_adapter(ours, tmp / name)
        shrink_adapter(tmp / name, tmp / f"{name} full", energy=1.0)
        theirs = peft.PeftModel.from_pretrained(make(), tmp / f"{name} full").eval()
        row(f"shrink to full rank, {name}", "PEFT (shrunk) vs loralab (original)",
            (logits(ours, make) - logits(theirs, make)).abs().max())


def dora(make, targets: list[str], tmp: Path) -> None:
    name = "Llama Linear" if make is llama else "GPT-2 Conv1D"
    fields = {"target_modules": targets, "use_dora": True}
    if make is gpt2:
        fields["fan_in_fan_out"] = True
    theirs = peft.get_peft_model(make(), peft.LoraConfig(r=4, lora_alpha=8, **fields))
    train_like(theirs)
    theirs.save_pretrained(tmp / "p")
    ours = make()
    load_adapter(ours, tmp / "p")
    row(f"DoRA, {name}", "PEFT → loralab", (logits(ours, make) - logits(theirs, make))
        .abs().max())
    mine = make()
    inject_lora(mine, AdapterConfig(r=4, lora_alpha=8, **fields))
    train_like(mine)
    save_adapter(mine, tmp / "o")
    back = peft.PeftModel.from_pretrained(make(), tmp / "o").eval()
    row(f"DoRA, {name}", "loralab → PEFT", (logits(mine, make) - logits(back, make))
        .abs().max())
    merged = theirs.merge_and_unload()
    merge_lora(ours)
    ours_merged = unload_lora(ours)
    x = {k: v for k, v in merged.state_dict().items()}
    row(f"DoRA, {name}", "merge vs PEFT merge_and_unload (weights)",
        max(float((x[k] - v).abs().max()) for k, v in ours_merged.state_dict().items()))


def qlora(tmp: Path) -> None:
    folder = tmp / "llama64"
    llama64().save_pretrained(folder)
    ours = load4(folder)
    inject_lora(ours, AdapterConfig(r=4, lora_alpha=8, target_modules=QV))
    train_like(ours)
    save_adapter(ours, tmp / "q_o")
    theirs = peft.PeftModel.from_pretrained(load4(folder), tmp / "q_o").eval()
    row("QLoRA NF4, Llama", "loralab → PEFT", (logits4(ours) - logits4(theirs)).abs().max())
    made = peft.get_peft_model(load4(folder), peft.LoraConfig(r=4, lora_alpha=8,
                                                             target_modules=QV))
    train_like(made)
    made.save_pretrained(tmp / "q_p")
    back = load4(folder)
    load_adapter(back, tmp / "q_p")
    row("QLoRA NF4, Llama", "PEFT → loralab", (logits4(back) - logits4(made.eval()))
        .abs().max())
    merge_lora(back)
    merged = made.merge_and_unload()
    row("QLoRA NF4, Llama", "merge vs PEFT merge_and_unload (logits)",
        (logits4(back) - logits4(merged)).abs().max())


def main() -> None:
    torch.set_num_threads(1)
    named_adapters()
    merge_methods()
    with tempfile.TemporaryDirectory() as tmp:
        shrink(Path(tmp))
    if "--merge-only" in sys.argv:
        ROWS[:] = [r for r in ROWS if r[0].startswith(("add_weighted", "shrink"))]
        return _print()
    with tempfile.TemporaryDirectory() as tmp:
        dora(llama, ["q_proj", "v_proj"], Path(tmp) / "l")
        dora(gpt2, ["c_attn"], Path(tmp) / "g")
        qlora(Path(tmp))
    _print()


def _print() -> None:
    print("| case | direction | max abs diff |")
    print("|---|---|---|")
    for case, direction, diff in ROWS:
        print(f"| {case} | {direction} | {diff:.2e} |")


if __name__ == "__main__":
    main()
