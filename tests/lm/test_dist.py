"""torchrun with 2 CPU processes (gloo, DDP) gives the losses of 1 process, same global batch.

The test launches this very file under ``python -m torch.distributed.run --nproc_per_node=2``;
run as a script it trains a tiny model (full fine-tuning and LoRA) and rank 0 writes the
losses as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CFG = {"d_model": 16, "n_layers": 2, "n_heads": 2, "block_size": 16}
STEPS = 6


def _train_all(dist=None) -> dict:
    """Full fine-tuning and LoRA (r=2 on attn) of the same tiny model; losses per step."""
    import torch

    from loralab.lm.corpus import build_data
    from loralab.lm.model import CharTokenizer, TinyLM, TinyLMConfig
    from loralab.lm.train import TrainConfig, train
    from loralab.lora import AdapterConfig, inject_lora

    data = build_data("finetune", CharTokenizer(), CFG["block_size"], n_train=200, n_val=40)
    tc = TrainConfig(steps=STEPS, batch_size=8, lr=1e-2, warmup_steps=1, eval_every=3,
                     eval_batches=None, eval_batch_size=8)
    out = {}
    for kind in ("full", "lora"):
        model = TinyLM(TinyLMConfig(**CFG), seed=1)
        if kind == "lora":
            inject_lora(model, AdapterConfig(r=2, target_modules=["q_proj", "k_proj", "v_proj",
                                                                  "o_proj"]),
                        generator=torch.Generator().manual_seed(0))
        res = train(model, data, tc, dist=dist)
        out[kind] = {"train": res.train_loss, "val": res.val_loss,
                     "weight_sum": float(sum(p.detach().double().sum()
                                                for p in model.parameters()))}
    return out


def _worker(path: str) -> None:
    import torch.distributed

    from loralab.lm.dist import init_distributed

    dist, _ = init_distributed("cpu")
    assert dist.world_size == 2 and dist.backend == "gloo"
    out = _train_all(dist)
    if dist.is_main:
        Path(path).write_text(json.dumps(out))
    dist.barrier()          # tear down together: a peer's early exit can abort gloo's threads
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         __file__, str(out)], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(out.read_text())
    before = torch.get_num_threads()
    torch.set_num_threads(1)        # as each torchrun worker (OMP_NUM_THREADS=1)
    try:
        single = _train_all()
    finally:
        torch.set_num_threads(before)
    for kind in ("full", "lora"):
        assert len(ddp[kind]["train"]) == STEPS
        assert ddp[kind]["train"] == pytest.approx(single[kind]["train"], abs=2e-5)
        assert ddp[kind]["val"] == pytest.approx(single[kind]["val"], abs=2e-5)
        assert ddp[kind]["weight_sum"] == pytest.approx(single[kind]["weight_sum"], rel=1e-5)
    # The runs really trained (so equal numbers are not trivially equal).
    assert single["full"]["train"][-1] < single["full"]["train"][0]


if __name__ == "__main__":
    _worker(sys.argv[1])
