"""``torchrun --nproc_per_node=2 loralab finetune --fsdp`` (FSDP2, gloo on CPU) gives the numbers
and the adapter of one process with ``--grad-checkpointing``: the sharding and the
recomputation change the arithmetic's order only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ARGS = ["finetune", "--preset", "quick", "--methods", "full,lora", "--ranks", "2", "--targets",
        "attn", "--steps", "6", "--no-progress"]


def _run(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def test_fsdp_two_processes_equal_one_process_with_checkpointing(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cache = ["--cache", str(tmp_path / "cache")]
    _run([sys.executable, "-m", "loralab", *ARGS, *cache, "--grad-checkpointing",
          "--threads", "1", "--out", "one", "--json", "one.json"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
          "-m", "loralab", *ARGS, *cache, "--fsdp", "--out", "two", "--json", "two.json"],
         tmp_path)
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2
    for a, b in zip(one["runs"], two["runs"], strict=True):
        assert a["label"] == b["label"]
        assert max(abs(x - y) for x, y in zip(a["train_loss"], b["train_loss"],
                                              strict=True)) <= 1e-5, a["label"]
        assert a["final_val_loss"] == pytest.approx(b["final_val_loss"], abs=1e-5)
    ours = load_file(tmp_path / "one" / "adapters" / "lora-r2-attn" / "adapter_model.safetensors")
    theirs = load_file(tmp_path / "two" / "adapters" / "lora-r2-attn" /
                       "adapter_model.safetensors")
    assert set(ours) == set(theirs) and ours
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in ours) <= 1e-5
    assert any(float(t.abs().max()) > 0 for k, t in theirs.items() if "lora_B" in k)
    assert torch.is_tensor(next(iter(theirs.values())))


def test_fsdp_refuses_methods_it_does_not_shard(run_cli, tmp_path: Path, capsys) -> None:
    code = run_cli(["finetune", "--preset", "quick", "--methods", "full,dora", "--fsdp",
                    "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "dora" in err and "--fsdp" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
