"""The training loop shared by pretraining, full fine-tuning and LoRA fine-tuning.

One loop, whatever is trainable: AdamW over the parameters with ``requires_grad``, a linear
warm-up then cosine decay, gradient clipping, and the same data order for every run (the
batch of step ``t`` is a pure function of ``(seed, t)``, see :meth:`LMData.batch`).

Measured per run: train loss every step, val loss every ``eval_every`` steps, the median step
time, tokens/s, achieved FLOP/s (an analytic FLOP count, :func:`train_flops_per_step`, over the
median step time) against the matmul peak measured in the same process (:mod:`loralab.peak`),
optimizer-state bytes and peak memory.

Scale-out: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
``DistributedDataParallel`` (gloo on CPU, nccl on CUDA); each rank takes an equal slice of the
global batch, so the averaged gradient equals the one-process gradient of the same global batch.

Ctrl-C: the first SIGINT asks the loop to stop at the end of the current step; it then saves a
checkpoint and raises ``TrainingInterrupted`` (a ``KeyboardInterrupt`` naming the file). Calling
:func:`train` again with the same checkpoint prefix resumes with identical numbers. A
non-finite train loss stops the run at once ("training diverged"): it is never trained on.
"""

from __future__ import annotations

import contextlib
import math
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import LoralabError
from ..heap import keep_freed_memory
from ..peak import measure_matmul_peak
from .checkpoint import TrainingInterrupted, load_checkpoint, remove_checkpoint, save_checkpoint
from .corpus import LMData
from .cost import count_saved_tensors, optimizer_state_bytes, train_flops_per_step
from .dist import DistContext
from .model import lm_loss

__all__ = ["EVAL_BATCH", "TrainConfig", "TrainResult", "evaluate", "lr_at",
           "optimizer_state_bytes", "train", "train_flops_per_step"]

# Val windows per forward: 16 × 64 tokens evaluated the default preset's val split in 0.211 s
# on one thread against 0.269 s for 64 windows (8: 0.212, 32: 0.223): batches that fit the
# caches beat big GEMMs here.
EVAL_BATCH = 16


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        steps: optimizer steps.
        batch_size: the *global* batch (sequences per step, summed over DDP ranks).
        lr: peak learning rate; warm-up over ``warmup_steps``, cosine down to
            ``lr·min_lr_ratio`` at the last step.
        weight_decay, betas: AdamW's.
        grad_clip: max global grad norm (0 disables).
        eval_every: val loss every this many steps (and after the last step).
        eval_batches: val batches per evaluation (``None`` = the whole val split).
        eval_batch_size: windows per val batch (a pure speed knob: the loss is the same to
            float rounding; :data:`EVAL_BATCH` is the fastest measured on a CPU).
        seed: data-order seed.
    """

    steps: int
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 25
    eval_batches: int | None = 8
    eval_batch_size: int = EVAL_BATCH
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise LoralabError(f"{name}={getattr(self, name)} is not allowed; it must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise LoralabError(f"lr={self.lr} is not allowed; it must be a finite number > 0")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise LoralabError("warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")


@dataclass
class TrainResult:
    """What one run measured (lists are per step / per evaluation, global over ranks)."""

    steps: int
    train_loss: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    step_time_s: float = float("nan")
    tokens_per_step: int = 0
    tokens_per_s: float = float("nan")
    flops_per_step: float = 0.0
    flops_per_s: float = float("nan")
    mfu: float = float("nan")
    optimizer_state_bytes: int = 0
    peak_memory_bytes: int = 0
    peak_memory_kind: str = ""
    trainable_params: int = 0
    total_params: int = 0
    resumed_from: int | None = None
    peak_flops: float = float("nan")

    @property
    def final_val_loss(self) -> float:
        return self.val_loss[-1] if self.val_loss else float("nan")

    def history(self) -> dict:
        """The per-step lists (what a checkpoint stores)."""
        return {"train_loss": self.train_loss, "val_steps": self.val_steps,
                "val_loss": self.val_loss, "step_times": self.step_times}


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up, then cosine to the floor."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps - 1)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model: nn.Module, data: LMData, batch_size: int, max_batches: int | None = None,
             *, device: torch.device | str = "cpu", dist: DistContext | None = None,
             bf16: bool = False) -> float:
    """Mean next-token loss (nats) over the fixed val windows; batches are split over ranks."""
    dist = dist or DistContext()
    was_training = model.training
    model.eval()
    batches = data.val_batches(batch_size, max_batches)
    total = torch.zeros(2, dtype=torch.float64, device=device)   # [sum of losses, tokens]
    dev_type = torch.device(device).type
    for i in dist.eval_indices(len(batches)):
        x, y = batches[0 if i is None else i]
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x.to(device))
        if i is None:                 # FSDP padding: every rank runs as many forwards
            continue
        total[0] += lm_loss(logits, y.to(device), reduction="sum").double()
        total[1] += y.numel()
    dist.all_reduce_sum(total)
    model.train(was_training)
    return float(total[0] / total[1])


def _local_slice(x: torch.Tensor, dist: DistContext) -> torch.Tensor:
    per = x.shape[0] // dist.world_size
    return x[dist.rank * per:(dist.rank + 1) * per]


class _StopFlag:
    """First Ctrl-C sets ``requested``; the loop stops at the end of the step."""

    def __init__(self) -> None:
        self.requested = False
        self._old = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:                      # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _setup(model: nn.Module, config: TrainConfig, dist: DistContext,
           device: torch.device | str, groups: list[dict] | None = None
           ) -> tuple[torch.device, list[torch.Tensor], torch.optim.Optimizer]:
    """Check the batch splits over the ranks, move ``model`` to ``device`` in train mode, and
    build AdamW over its trainable parameters: ``(device, params, optimizer)``. ``groups``:
    AdamW parameter groups, each with an ``lr_scale`` (its learning rate is
    ``lr_scale × lr_at(step)``), covering every trainable parameter (e.g. LoRA+)."""
    if config.batch_size % dist.world_size:
        raise LoralabError(f"batch_size={config.batch_size} is not allowed with "
                           f"{dist.world_size} processes; it must be a multiple of it")
    device = torch.device(device)
    model.to(device).train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise LoralabError("the model has no trainable parameter")
    params = [p for _, p in named]
    if groups is None:
        groups = [{"params": params, "lr_scale": 1.0}]
    grouped = [id(p) for g in groups for p in g["params"]]
    if sorted(grouped) != sorted(id(p) for p in params):
        raise LoralabError("the parameter groups must hold every trainable parameter once")
    optimizer = torch.optim.AdamW([dict(g) for g in groups], lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)
    return device, params, optimizer


def _new_result(model: nn.Module, data: LMData, config: TrainConfig,
                params: list[torch.Tensor]) -> TrainResult:
    """The run's static counts: parameters, ``B·T`` tokens and the analytic FLOPs per step."""
    return TrainResult(
        steps=config.steps, trainable_params=sum(p.numel() for p in params),
        total_params=sum(p.numel() for p in model.parameters()),
        tokens_per_step=config.batch_size * data.block_size,
        flops_per_step=train_flops_per_step(model, config.batch_size, data.block_size))


def _resume(checkpoint: str | None, model: nn.Module, optimizer: torch.optim.Optimizer,
            run_key: str, result: TrainResult) -> int:
    """The first step to run: 0, or the step of a matching checkpoint, whose weights and
    optimizer state are then loaded and whose history is copied into ``result``."""
    state = None if checkpoint is None else load_checkpoint(checkpoint, model, optimizer, run_key,
                                                            max_step=result.steps)
    if state is None:
        return 0
    start = state["step"]
    for key, value in state["history"].items():
        setattr(result, key, list(value))
    result.resumed_from = start
    return start


@dataclass
class _Loop:
    """What every step of one :func:`train` call uses; ``net`` is ``model`` or its DDP wrap."""

    model: nn.Module
    net: nn.Module
    data: LMData
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    params: list[torch.Tensor]
    device: torch.device
    dist: DistContext
    bf16: bool

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self, step: int, measure: bool) -> tuple[torch.Tensor, float, int]:
        """One optimizer step on this rank's slice of the global ``(B, T)`` batch of ``step``:
        ``(loss, seconds, saved activation bytes)``, the bytes counted only when ``measure``."""
        config, device = self.config, self.device
        x, y = self.data.batch(step, config.batch_size, config.seed)       # (B, T) global
        x, y = _local_slice(x, self.dist).to(device), _local_slice(y, self.dist).to(device)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, config) * group.get("lr_scale", 1.0)
        self._sync()
        t0 = time.perf_counter()
        with (count_saved_tensors(self.dist.local_params(self.model)) if measure
              else contextlib.nullcontext([0])) as saved:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss = lm_loss(self.net(x), y)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._sync()
        return loss, time.perf_counter() - t0, saved[0]

    def record(self, step: int, loss: torch.Tensor, stop_requested: bool,
               result: TrainResult) -> bool:
        """Append the global mean train loss (and the val loss on eval steps) to ``result``;
        return whether any rank asked to stop. One all-reduce carries both numbers."""
        config = self.config
        flags = torch.tensor([float(loss.detach()), float(stop_requested)],
                             dtype=torch.float64, device=self.device)
        self.dist.all_reduce_sum(flags)
        result.train_loss.append(float(flags[0]) / self.dist.world_size)
        if not math.isfinite(result.train_loss[-1]):
            raise LoralabError(f"training diverged at step {step + 1} (train loss "
                               f"{result.train_loss[-1]}); lower the learning rate ({config.lr:g})")
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            result.val_steps.append(step + 1)
            result.val_loss.append(evaluate(self.model, self.data, config.eval_batch_size,
                                            config.eval_batches, device=self.device,
                                            dist=self.dist, bf16=self.bf16))
        return bool(flags[1] > 0)

    def save_and_stop(self, checkpoint: str | None, done: int, result: TrainResult,
                      run_key: str) -> None:
        """Save the checkpoint after ``done`` steps (rank 0 writes), raise
        :class:`~loralab.lm.checkpoint.TrainingInterrupted` naming its JSON file."""
        if checkpoint is not None:
            if self.dist.is_main:
                save_checkpoint(checkpoint, self.model, self.optimizer, done,
                                result.history(), run_key)
            self.dist.barrier()
        raise TrainingInterrupted(f"{checkpoint}.json" if checkpoint is not None else None)


def train(model: nn.Module, data: LMData, config: TrainConfig, *,
          device: torch.device | str = "cpu", dist: DistContext | None = None,
          bf16: bool = False, checkpoint: str | None = None, run_key: str = "",
          on_step: Callable[[int, float], None] | None = None,
          param_groups: list[dict] | None = None,
          peak_flops: float | None = None,
          first_step_guard: contextlib.AbstractContextManager | None = None) -> TrainResult:
    """Train ``model``'s trainable parameters in place; return the measurements.

    ``checkpoint`` is a path prefix: if ``<prefix>.json`` / ``.safetensors`` exist and match
    ``run_key`` the run resumes from them; on Ctrl-C they are written (by rank 0) and
    ``KeyboardInterrupt`` is raised; after the last step they are removed.
    ``on_step(step, train_loss)`` is called after each step (e.g. a progress bar).
    ``param_groups``: AdamW groups with an ``lr_scale`` each (see :func:`_setup`).
    ``peak_flops``: what ``mfu`` divides by; ``None`` measures the matmul peak now, at this
    thread count and device, bf16 when ``bf16`` (:func:`~loralab.peak.measure_matmul_peak`,
    cached per process). On a CPU it first asks ``malloc`` to keep freed blocks
    (:func:`loralab.heap.keep_freed_memory`): each step reuses the last one's pages.
    ``first_step_guard``: a context entered around the first step this call runs (forward,
    backward, optimizer step), e.g. :class:`loralab.lora.audit.GradientGuard`, which raises
    when an adapter parameter did not learn.
    """
    dist = dist or DistContext()
    device, params, optimizer = _setup(model, config, dist, device, param_groups)
    if device.type == "cpu":
        keep_freed_memory()
    if peak_flops is None:
        peak_flops = measure_matmul_peak(dtype=torch.bfloat16 if bf16 else torch.float32,
                                         device=device)
    result = _new_result(model, data, config, params)
    start = _resume(checkpoint, model, optimizer, run_key, result)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loop = _Loop(model, dist.wrap(model, device), data, config, optimizer, params, device,
                 dist, bf16)
    activations = 0
    with _StopFlag() as stop:
        for step in range(start, config.steps):
            guard = first_step_guard if step == start else None
            with guard if guard is not None else contextlib.nullcontext():
                loss, seconds, saved = loop.step(step, measure=step == start)
            if step == start:
                activations = saved
            result.step_times.append(seconds)
            stop_requested = loop.record(step, loss, stop.requested, result)
            if on_step is not None:
                on_step(step + 1, result.train_loss[-1])
            if stop_requested and step + 1 < config.steps:
                loop.save_and_stop(checkpoint, step + 1, result, run_key)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    _finish(result, optimizer, params, weight_bytes + activations, device, peak_flops)
    if checkpoint is not None and dist.is_main:
        remove_checkpoint(checkpoint)
    return result


def _finish(result: TrainResult, optimizer: torch.optim.Optimizer, params: list[torch.Tensor],
            weights_and_activations: int, device: torch.device, peak_flops: float) -> None:
    times = result.step_times[3:] if len(result.step_times) > 6 else result.step_times
    result.step_time_s = statistics.median(times) if times else float("nan")
    result.tokens_per_s = result.tokens_per_step / result.step_time_s
    result.flops_per_s = result.flops_per_step / result.step_time_s
    result.mfu = result.flops_per_s / peak_flops
    result.peak_flops = peak_flops
    result.optimizer_state_bytes = optimizer_state_bytes(optimizer)
    if device.type == "cuda":
        result.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
        result.peak_memory_kind = "cuda max_memory_allocated"
    else:
        grads = sum(p.numel() * p.element_size() for p in params)
        result.peak_memory_bytes = (weights_and_activations + grads
                                    + result.optimizer_state_bytes)
        result.peak_memory_kind = "weights + grads + optimizer state + saved activations"
