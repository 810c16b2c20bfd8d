"""Merge two trained adapters every way ``add_weighted_adapter`` knows, and see what each does.

Two LoRA adapters (r = 8 on every attention and MLP projection) are trained for a few steps
on a small random-init TinyLM, one on English, one on Pig Latin. Then each combination of
``0.6·english + 0.4·piglatin`` is built and compared with the exact weighted sum of their
updates, ``Σ w_i ΔW_i``: the table prints the relative distance and the share of zero
entries, and ``merge_methods.png`` shows it with one layer's update under five of them.

    python examples/merge_methods.py [--steps 30] [--density 0.5] [--out merge_methods.png]
"""

from __future__ import annotations

import argparse

import torch

from loralab.lm.corpus import build_data
from loralab.lm.model import CharTokenizer, TinyLM, TinyLMConfig, lm_loss
from loralab.lora import AdapterConfig, add_adapter, inject_lora, set_adapter
from loralab.lora.merge_error import merge_errors
from loralab.plots import save_png
from loralab.plots.merge_methods import merge_methods_figure

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]


def train(model: torch.nn.Module, task: str, steps: int, seed: int) -> float:
    """A few AdamW steps of the active adapter on ``task``; returns the last loss."""
    tok = CharTokenizer()
    data = build_data(task, tok, 32, n_train=400, n_val=20, seed=seed)   # type: ignore[arg-type]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = torch.tensor(0.0)
    for step in range(steps):
        x, y = data.batch(step, 16, seed)                                 # (B, T) each
        loss = lm_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--out", default="merge_methods.png")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TinyLM(TinyLMConfig(d_model=64, n_layers=2, n_heads=4, block_size=32))
    config = AdapterConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=True)
    inject_lora(model, config, adapter_name="english")
    add_adapter(model, "piglatin", config)
    for name, task in (("english", "pretrain"), ("piglatin", "finetune")):
        set_adapter(model, name)
        print(f"trained {name:<9} {args.steps} steps: loss {train(model, task, args.steps, 1):.3f}")
    errors = merge_errors(model, ["english", "piglatin"], [0.6, 0.4], density=args.density)
    print(f"\n{'combination':<20} {'rank':>4} {'distance':>10} {'zeros':>6}")
    for row in errors.rows:
        print(f"{row.combination:<20} {row.rank:>4} {row.relative:>10.3g} {row.zeros:>6.1%}")
    print(f"\nwrote {save_png(merge_methods_figure(errors), args.out)}")


if __name__ == "__main__":
    main()
