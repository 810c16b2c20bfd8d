"""The experiment's FLOP floor (:class:`~loralab.results.floor.Floor`), from what it ran.

Counted from the runs' own records, so a changed schedule or target set is counted as run:

* **train**: each run's steps × its analytic FLOPs a step (``flops_per_s × step_time_s`` of
  :func:`loralab.lm.train.train`: ``6·n·d_in·d_out`` per trained matrix, ``4·…`` per frozen
  one); pretraining the tiny LM, when this run did it, as ``3 ×`` a forward per token;
* **evaluate**: every val-loss point of every run and of the base, on the windows it
  evaluated (``eval_batches × eval_batch_size`` of them, at most the val split), and the
  source domain's (the general text, the tiny LM's pretraining English) before and after;
* **analysis**: the merge checks (5 forwards on :func:`~.analysis.check_windows` windows and
  the merged model's val loss), one val loss per truncation row, the samples' tokens, and
  the λ sweep's target and source losses (:mod:`.intruders`).

A forward costs :func:`loralab.lm.cost.forward_flops_per_token` a token. The peak is the
median over the runs of ``flops_per_s / mfu`` (the matmul peak each run measured) times the
``processes`` that trained side by side: each of those measured its own share of the cores
while all multiplied at once, so the machine's peak is their sum.
"""

from __future__ import annotations

import statistics

from torch import nn

from ..lm.corpus import LMData
from ..lm.cost import forward_flops_per_token
from ..lm.train import EVAL_BATCH
from ..method_specs import method_spec
from ..results.finetune import ExperimentResult
from ..results.floor import Floor
from .analysis import check_windows
from .workload import Workload

__all__ = ["experiment_floor"]


def _eval_tokens(data: LMData, batches: int | None, batch: int = EVAL_BATCH) -> int:
    """Tokens one :func:`~loralab.lm.train.evaluate` call runs over ``batches`` batches."""
    t = data.block_size
    windows = max(0, (len(data.val) - 1) // t)
    if batches is not None:
        windows = min(windows, batches * batch)
    return windows * t


def experiment_floor(result: ExperimentResult, work: Workload, base: nn.Module,
                     processes: int = 1, restored: frozenset[str] = frozenset()) -> Floor:
    """The :class:`Floor` of ``result`` (its runs, analysis and wall time) on ``work``;
    ``processes``: the runs trained side by side (:mod:`.jobs`), 1 when one after another;
    ``restored``: labels of runs an earlier invocation finished (restored from the resume
    folder: their training, evaluations and merge checks are not in this wall time, nor
    counted here)."""
    spec, ft = result.config.spec, work.ft
    fwd = forward_flops_per_token(base)
    ran = [r for r in result.runs if r.label not in restored]
    train = sum((spec.lora if method_spec(r.method).is_adapter else spec.full).steps
                * r.flops_per_s * r.step_time_s for r in ran)
    if result.base.pretrain_val_loss is not None and not result.base.cached:
        p = spec.pretrain
        train += 3 * fwd * p.steps * p.batch_size * spec.model.block_size
    ev = _eval_tokens(ft, spec.lora.eval_batches, spec.lora.eval_batch_size)
    tokens = ev + sum(len(r.val_steps) * _eval_tokens(ft, tc.eval_batches, tc.eval_batch_size)
                      for r in ran
                      for tc in [spec.lora if method_spec(r.method).is_adapter else spec.full])
    source = 0
    if work.general is not None:        # the source domain: before, and after every run
        source = _eval_tokens(work.general, spec.real.general_batches if spec.real else None)
        tokens += (len(ran) + 1) * source
    analysis = 0.0
    a = result.analysis
    if a is not None:
        per_check = 5 * check_windows(base, ft.block_size) * ft.block_size + ev
        enc = work.tokenizer.encode
        samples = sum(len(enc(s.prompt + out)) for s in a.samples for out in s.outputs.values())
        sweep = [p for p in getattr(a.intruders, "lambda_sweep", []) if p.lam < 1.0]
        checks = sum(c.label not in restored for c in a.merge_checks)
        analysis = fwd * (checks * per_check + len(a.truncation) * ev + samples
                          + len(sweep) * (ev + source))
    peaks = [r.flops_per_s / r.mfu for r in ran or result.runs if r.mfu and r.mfu > 0]
    return Floor(train_flops=train, evaluate_flops=fwd * tokens, analysis_flops=analysis,
                 peak_flops=max(1, processes) * statistics.median(peaks) if peaks
                 else float("nan"),
                 wall_s=result.wall_s, restored_runs=len(result.runs) - len(ran))
