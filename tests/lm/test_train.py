"""The training loop: schedule, FLOP and optimizer-state accounting, determinism, Ctrl-C resume,
and corrupt checkpoints."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.lm.checkpoint import load_weights, save_weights
from loralab.lm.corpus import build_data
from loralab.lm.dist import DistContext, resolve_device
from loralab.lm.model import CharTokenizer, TinyLM, TinyLMConfig
from loralab.lm.train import (
    TrainConfig,
    lr_at,
    train,
    train_flops_per_step,
)

CFG = TinyLMConfig(d_model=16, n_layers=1, n_heads=2, block_size=12)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return build_data("pretrain", CharTokenizer(), CFG.block_size, n_train=300, n_val=30)


def _tc(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 8, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2,
                          "eval_every": 4, "eval_batches": 2, **kw})


def test_lr_schedule_warmup_then_cosine_to_floor() -> None:
    tc = TrainConfig(steps=11, lr=1.0, warmup_steps=2, min_lr_ratio=0.1)
    assert [lr_at(s, tc) for s in (0, 1)] == [0.5, 1.0]
    assert lr_at(2, tc) == pytest.approx(1.0)
    assert lr_at(10, tc) == pytest.approx(0.1)
    mid = 2 + (10 - 2) / 2
    assert lr_at(int(mid), tc) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps=0"), ({"lr": float("nan")}, "lr=nan"),
    ({"min_lr_ratio": 2.0}, "min_lr_ratio"),
])
def test_train_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(LoralabError, match=message):
        TrainConfig(**{"steps": 3, **kwargs})


def test_flop_count_of_linear_layers() -> None:
    net = nn.Sequential(nn.Linear(8, 4, bias=False), nn.Linear(4, 2, bias=False))
    n = 3 * 5
    assert train_flops_per_step(net, 3, 5) == 6 * n * (8 * 4 + 4 * 2)
    net[0].weight.requires_grad_(False)      # frozen: forward + input gradient only
    assert train_flops_per_step(net, 3, 5) == 4 * n * 8 * 4 + 6 * n * 4 * 2


def test_training_lowers_loss_and_adam_state_is_two_moments(data) -> None:
    model = TinyLM(CFG)
    res = train(model, data, _tc(steps=30, eval_every=10))
    assert res.val_loss[-1] < res.val_loss[0] and res.val_steps == [10, 20, 30]
    n_params = len(list(model.parameters()))
    n = sum(p.numel() for p in model.parameters())
    # AdamW keeps exp_avg and exp_avg_sq (fp32, like the parameter) plus a scalar step each.
    assert res.optimizer_state_bytes == 2 * 4 * n + 4 * n_params
    assert res.trainable_params == res.total_params == n
    assert res.tokens_per_step == 4 * CFG.block_size
    assert res.peak_memory_bytes > 4 * 4 * n        # weights, grads, two moments, activations
    assert res.flops_per_s == pytest.approx(res.flops_per_step / res.step_time_s)


def test_same_seed_same_numbers_and_frozen_params_do_not_move(data) -> None:
    a, b = TinyLM(CFG), TinyLM(CFG)
    for m in (a, b):
        m.tok_emb.weight.requires_grad_(False)
    before = a.tok_emb.weight.clone()
    ra, rb = train(a, data, _tc()), train(b, data, _tc())
    assert ra.train_loss == rb.train_loss and ra.val_loss == rb.val_loss
    assert torch.equal(a.tok_emb.weight, before)
    assert ra.trainable_params == ra.total_params - a.tok_emb.weight.numel()


def test_ctrl_c_saves_and_a_rerun_resumes_exactly(data, tmp_path: Path) -> None:
    ref_model = TinyLM(CFG)
    ref = train(ref_model, data, _tc())
    prefix = str(tmp_path / "run.ckpt")

    def interrupt(step: int, _loss: float) -> None:
        if step == 5:
            signal.raise_signal(signal.SIGINT)

    model = TinyLM(CFG)
    with pytest.raises(KeyboardInterrupt):
        train(model, data, _tc(), checkpoint=prefix, run_key="k", on_step=interrupt)
    assert Path(prefix + ".json").is_file() and Path(prefix + ".safetensors").is_file()
    fresh = TinyLM(CFG)
    res = train(fresh, data, _tc(), checkpoint=prefix, run_key="k")
    # The signal came after step 5's stop check, so the loop finished step 6 and then stopped.
    assert res.resumed_from == 6
    assert res.train_loss == pytest.approx(ref.train_loss, abs=1e-6)
    assert res.val_loss == pytest.approx(ref.val_loss, abs=1e-6)
    for p, q in zip(fresh.parameters(), ref_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
    assert not Path(prefix + ".json").exists()        # removed after the last step


def _interrupted_checkpoint(data, tmp_path: Path) -> str:
    prefix = str(tmp_path / "run.ckpt")

    def interrupt(step: int, _loss: float) -> None:
        if step == 2:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(TinyLM(CFG), data, _tc(), checkpoint=prefix, run_key="k", on_step=interrupt)
    return prefix


def test_corrupt_or_foreign_checkpoint_is_refused_and_model_untouched(data,
                                                                      tmp_path: Path) -> None:
    prefix = _interrupted_checkpoint(data, tmp_path)
    model = TinyLM(CFG, seed=9)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(LoralabError, match="belongs to another run"):
        train(model, data, _tc(), checkpoint=prefix, run_key="other")
    blob = Path(prefix + ".safetensors")
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(LoralabError, match="is corrupt"):
        train(model, data, _tc(), checkpoint=prefix, run_key="k")
    Path(prefix + ".json").write_text("{not json")
    with pytest.raises(LoralabError, match="cannot be read"):
        train(model, data, _tc(), checkpoint=prefix, run_key="k")
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_checkpoint_of_another_model_shape_is_refused(data, tmp_path: Path) -> None:
    prefix = _interrupted_checkpoint(data, tmp_path)
    other = TinyLM(TinyLMConfig(d_model=24, n_layers=1, n_heads=2, block_size=12))
    with pytest.raises(LoralabError, match="does not fit this model"):
        train(other, data, _tc(), checkpoint=prefix, run_key="k")


def test_weights_round_trip_and_corrupt_file(tmp_path: Path) -> None:
    t = {"a": torch.arange(6.0).view(2, 3), "b": torch.ones(2)}
    save_weights(tmp_path / "w.safetensors", t, {"x": 1})
    back, meta = load_weights(tmp_path / "w.safetensors")
    assert meta == {"x": 1} and all(torch.equal(back[k], t[k]) for k in t)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(LoralabError, match="is corrupt or not safetensors"):
        load_weights(tmp_path / "bad.safetensors")
    with pytest.raises(LoralabError, match="does not exist"):
        load_weights(tmp_path / "missing.safetensors")


def test_batch_must_split_evenly_over_ranks(data) -> None:
    with pytest.raises(LoralabError, match="batch_size=3 is not allowed with 2 processes"):
        train(TinyLM(CFG), data, _tc(batch_size=3), dist=DistContext(rank=0, world_size=2))


def test_device_choice() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(LoralabError, match="device 'tpu' is not allowed"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(LoralabError, match="not available"):
            resolve_device("cuda")


def test_bf16_autocast_trains_with_fp32_weights(data) -> None:
    model = TinyLM(CFG)
    res = train(model, data, _tc(steps=4, eval_every=2), bf16=True)
    assert all(math.isfinite(v) for v in res.train_loss + res.val_loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
