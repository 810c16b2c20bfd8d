"""FSDP2 with 2 CPU processes (gloo) trains LoRA exactly like 1 process, and gradient
checkpointing changes memory, not numbers.

The 2-process test launches this very file under ``python -m torch.distributed.run
--nproc_per_node=2``; run as a script it trains a tiny LoRA model sharded with FSDP (with and
without gradient checkpointing), gathers the trained factors on rank 0 and writes them, the
gathered base and the losses into the folder given on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from loralab.errors import LoralabError
from loralab.lm.dist import DistContext
from loralab.lm.fsdp import find_blocks, full_trainable_state, load_trainable_state
from loralab.lm.model import TinyLM, TinyLMConfig

CFG = TinyLMConfig(d_model=32, n_layers=2, n_heads=2, block_size=16)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
STEPS = 5
TOL = 1e-5          # FSDP (2 ranks) vs 1 process: losses and LoRA factors, absolute


def _lora_model() -> TinyLM:
    """The tiny LM (seed 1) with LoRA r=2 on every linear layer of the blocks; B = 0."""
    from loralab.lora import AdapterConfig, inject_lora

    model = TinyLM(CFG, seed=1)
    inject_lora(model, AdapterConfig(r=2, target_modules=TARGETS),
                generator=torch.Generator().manual_seed(0))
    return model


def _train(dist: DistContext | None = None, checkpointing: bool = False
           ) -> tuple[TinyLM, dict]:
    """``STEPS`` LoRA steps (global batch 8, even val split): the model and its losses."""
    from loralab.lm.corpus import build_data
    from loralab.lm.model import CharTokenizer
    from loralab.lm.train import TrainConfig, train

    data = build_data("finetune", CharTokenizer(), CFG.block_size, n_train=200, n_val=60)
    tc = TrainConfig(steps=STEPS, batch_size=8, lr=1e-2, warmup_steps=1, eval_every=2,
                     eval_batches=2, eval_batch_size=8)
    model = _lora_model()
    model.gradient_checkpointing_enable(checkpointing)
    if dist is not None:
        dist.shard(model, "cpu")
    res = train(model, data, tc, dist=dist, peak_flops=1e9)
    return model, {"train": res.train_loss, "val": res.val_loss}


def _worker(folder: str) -> None:
    import torch.distributed
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from loralab.lm.dist import init_distributed
    from loralab.lora import save_adapter

    dist, _ = init_distributed("cpu", strategy="fsdp")
    assert dist.world_size == 2 and dist.backend == "gloo" and dist.sharded
    out: dict = {}
    for ckpt in (False, True):
        model, losses = _train(dist, checkpointing=ckpt)
        local = {n: p.to_local().numel() for n, p in model.named_parameters()}
        trained = full_trainable_state(model)                      # collective
        full = get_model_state_dict(model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))               # collective, whole model
        if dist.is_main:
            tag = f"ckpt{int(ckpt)}"
            save_file(trained, f"{folder}/{tag}_trained.safetensors")
            save_file({n: t.contiguous() for n, t in full.items()},
                      f"{folder}/{tag}_full.safetensors")
            twin = _lora_model()                                   # unsharded, on rank 0
            load_trainable_state(twin, trained)
            save_adapter(twin, f"{folder}/{tag}_adapter")
            out[tag] = {**losses, "local_numel": local}
    if dist.is_main:
        Path(folder, "losses.json").write_text(json.dumps(out))
    dist.barrier()          # tear down together: a peer's early exit can abort gloo's threads
    torch.distributed.destroy_process_group()


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in a)


def test_fsdp_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from loralab.lora import save_adapter
    from loralab.threads import torch_threads

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         __file__, str(tmp_path)], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = json.loads((tmp_path / "losses.json").read_text())
    with torch_threads(1):                 # as each torchrun worker (OMP_NUM_THREADS=1)
        single, ref = _train()
    save_adapter(single, tmp_path / "single_adapter")
    init = _lora_model()
    want = {n: p.detach() for n, p in single.named_parameters() if p.requires_grad}
    base0 = {n: p.detach() for n, p in init.named_parameters() if not p.requires_grad}
    for tag in ("ckpt0", "ckpt1"):
        got, run = load_file(tmp_path / f"{tag}_trained.safetensors"), losses[tag]
        # Names and shapes of the unwrapped model, values those of the 1-process run.
        assert {n: t.shape for n, t in got.items()} == {n: t.shape for n, t in want.items()}
        assert _max_diff(got, want) <= TOL
        assert run["train"] == pytest.approx(ref["train"], abs=TOL)
        assert run["val"] == pytest.approx(ref["val"], abs=TOL) and len(run["val"]) == 3
        # The base, gathered whole, is bit-identical to the untrained model's.
        full = load_file(tmp_path / f"{tag}_full.safetensors")
        assert all(torch.equal(full[n], base0[n]) for n in base0)
        # Each rank really held half of every (even-sized) parameter.
        numel = dict(init.named_parameters())
        assert all(run["local_numel"][n] * 2 == numel[n].numel() for n in numel)
        # The adapter saved from rank 0 is the 1-process one.
        a = load_file(tmp_path / f"{tag}_adapter" / "adapter_model.safetensors")
        b = load_file(tmp_path / "single_adapter" / "adapter_model.safetensors")
        assert _max_diff(a, b) <= TOL
    # Only LoRA factors moved (so equal numbers are not trivially equal): B left zero.
    assert all(torch.equal(p, base0[n]) for n, p in single.named_parameters() if n in base0)
    assert all(float(p.abs().max()) > 0 for n, p in want.items() if ".lora_B." in n)
    assert ref["train"][-1] < ref["train"][0]


def _loss_and_grads(model: TinyLM, idx: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    logits = model(idx)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), idx[:, 1:].flatten())
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()
                         if p.grad is not None}


@pytest.mark.parametrize("lora", [True, False])
def test_gradient_checkpointing_same_loss_and_grads(lora: bool, one_torch_thread) -> None:
    model = _lora_model() if lora else TinyLM(CFG, seed=1)
    idx = torch.randint(0, CFG.vocab_size, (4, CFG.block_size),
                        generator=torch.Generator().manual_seed(3))
    loss, grads = _loss_and_grads(model, idx)
    model.gradient_checkpointing_enable()
    loss_ck, grads_ck = _loss_and_grads(model, idx)
    assert abs(loss - loss_ck) <= 1e-6
    assert sorted(grads) == sorted(grads_ck) and len(grads) > 0
    assert _max_diff(grads, grads_ck) <= 1e-6
    if lora:                   # frozen embeddings: the LoRA factors still get gradients
        assert all(".lora_" in n for n in grads) and len(grads) == 4 * len(TARGETS)


def saved_activation_bytes(model: TinyLM, idx: torch.Tensor) -> int:
    """Bytes of the distinct tensors kept from forward for backward: what autograd saves
    (parameters excluded) plus, under checkpointing, each block's input that the checkpoint
    holds to recompute from."""
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    total = [0]

    def count(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in skip and key not in seen:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t

    def hold_input(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        count(args[0])

    hooks = [b.register_forward_pre_hook(hold_input) for b in model.blocks] \
        if model.gradient_checkpointing else []
    try:
        with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
            loss = model(idx).float().mean()
    finally:
        for h in hooks:
            h.remove()
    loss.backward()
    return total[0]


def test_gradient_checkpointing_keeps_fewer_activations(one_torch_thread) -> None:
    model = _lora_model()
    idx = torch.zeros(4, CFG.block_size, dtype=torch.long)
    full = saved_activation_bytes(model, idx)
    model.gradient_checkpointing_enable()
    kept = saved_activation_bytes(model, idx)
    assert kept < full / 2                   # measured: 0.21× at d=32, 2 layers, B·T=64
    model.eval()                             # no recompute outside training
    assert not model.training and model(idx).shape == (4, CFG.block_size, CFG.vocab_size)


def test_strategy_and_fsdp_helpers_without_a_process_group() -> None:
    with pytest.raises(LoralabError, match="strategy 'zero' is not allowed"):
        DistContext(strategy="zero")  # type: ignore[arg-type]
    one = DistContext(strategy="fsdp")
    model = _lora_model()
    assert not one.sharded and one.shard(model, "cpu") is model and one.wrap(model, "cpu")
    with pytest.raises(LoralabError, match="sharded before training"):
        DistContext(rank=0, world_size=2, strategy="fsdp").wrap(model, torch.device("cpu"))
    assert find_blocks(model) == list(model.blocks)
    state = full_trainable_state(model)                  # unsharded: read directly
    assert sorted(state) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    twin = _lora_model()
    load_trainable_state(twin, {n: t + 1 for n, t in state.items()})
    assert all(torch.equal(dict(twin.named_parameters())[n], t + 1) for n, t in state.items())
    with pytest.raises(LoralabError, match="missing"):
        load_trainable_state(twin, dict(list(state.items())[1:]))
    bad = {n: t[:1] for n, t in state.items()}
    with pytest.raises(LoralabError, match="shape"):
        load_trainable_state(twin, bad)


def test_eval_indices_pad_so_every_fsdp_rank_runs_as_many_forwards() -> None:
    ddp = [DistContext(rank=r, world_size=2).eval_indices(3) for r in (0, 1)]
    fsdp = [DistContext(rank=r, world_size=2, strategy="fsdp").eval_indices(3) for r in (0, 1)]
    assert ddp == [[0, 2], [1]]
    assert fsdp == [[0, 2], [1, None]]
    assert DistContext().eval_indices(2) == [0, 1]


if __name__ == "__main__":
    _worker(sys.argv[1])
