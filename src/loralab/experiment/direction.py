"""DoRA's magnitude/direction view of training (Liu et al. 2024, §3 and Figure 2).

Write each row ``n`` of a weight ``W ∈ R^{d_out×d_in}`` as a magnitude ``m_n = ‖W_n‖`` and a
direction ``W_n/‖W_n‖`` (PEFT's and DoRA's code normalise per output row; the paper's
notation calls these columns). Against the pretrained ``W0``, after ``t`` steps:

    ΔM_t = (1/d_out) Σ_n |m_n,t − m_n,0|
    ΔD_t = (1/d_out) Σ_n (1 − cos(W_n,t, W0_n))

The paper plots ΔM against ΔD for one kind of projection (the query) of every layer at
several steps, for full fine-tuning, LoRA and DoRA, and finds: full fine-tuning and DoRA
have a **negative** slope (a layer changes mostly its direction or mostly its magnitude),
LoRA a **positive** one (both move together, in proportion), the paper's argument that
LoRA's updates are less flexible than full fine-tuning's and DoRA closes the gap.

:func:`tracked_runs` says which runs are traced (full, and LoRA and DoRA at the headline rank
on the last target set); :class:`DirectionTracker` records ``(ΔM, ΔD)`` of each layer at every
evaluation step; :func:`magnitude_direction` turns the traces into the correlation per method
and says whether this run reproduces the paper's signs. Since both ΔM and ΔD grow from 0
as training goes on, the pooled correlation leans positive for any method; the correlation
left after removing each step's mean (across layers at the same step) is given beside it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..method_specs import METHOD_SPECS, method_spec
from ..results.finetune import MagnitudeDirection, MDPoint, RunResult
from ..results.finetune_config import ExperimentConfig, run_label
from ..results.headline import headline_rank
from ..results.presets import parse_targets
from .workload import layer_paths, weight_out_in

__all__ = ["DirectionTracker", "delta_md", "magnitude_direction", "tracked_runs"]

TRACED = tuple(m for m, s in METHOD_SPECS.items() if s.paper_sign is not None)
"""The methods traced (full, LoRA, DoRA: those the paper's Figure 2 gives a sign)."""


def tracked_runs(config: ExperimentConfig, base: nn.Module | None = None,
                 target_sets: list[tuple[str, tuple[str, ...]]] | None = None
                 ) -> tuple[dict[str, str], str, tuple[str, ...]]:
    """``({run label: method}, module, layer paths of base)`` of the traced runs, empty
    without a DoRA method. The module is ``q_proj`` when the last target set has it
    (the paper's query), else that set's first module."""
    if not any(METHOD_SPECS[m].dora for m in config.methods):
        return {}, "", ()
    label, modules = (target_sets or [parse_targets(config.targets[-1])])[-1]
    rank = headline_rank(config.ranks)
    runs = {run_label(m, rank, label): m for m in TRACED if m in config.methods}
    module = "q_proj" if "q_proj" in modules else modules[0]
    layers = tuple(layer_paths(base, module)) if base is not None else ()
    return runs, module, layers


def delta_md(w0: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    """``(ΔM, ΔD)`` of ``w`` against ``w0``, both ``(d_out, d_in)``, per output row (above)."""
    w0, w = w0.double(), w.double()
    m0, m = w0.norm(dim=1), w.norm(dim=1)                                 # (d_out,)
    cos = (w * w0).sum(dim=1) / (m * m0).clamp_min(1e-300)
    return float((m - m0).abs().mean()), float((1 - cos).mean())


def _weight(model: nn.Module, path: str) -> torch.Tensor:
    """The weight ``path`` computes with, ``(d_out, d_in)``: an adapter layer's effective
    weight, or a plain layer's own (``Conv1D`` stores Wᵀ)."""
    mod = model.get_submodule(path)
    effective = getattr(mod, "effective_weight", None)
    return effective() if callable(effective) else weight_out_in(mod).detach()


class DirectionTracker:
    """Records ``(ΔM, ΔD)`` of ``layers`` of ``model`` against ``base`` every ``every`` steps
    and after step ``last``; call it as ``tracker(step)`` after each optimizer step."""

    def __init__(self, model: nn.Module, base: nn.Module, layers: tuple[str, ...],
                 every: int, last: int) -> None:
        self.model, self.layers, self.every, self.last = model, layers, every, last
        self.w0 = {p: _weight(base, p).clone() for p in layers}
        self.points: list[dict] = []

    def __call__(self, step: int) -> None:
        if step % self.every and step != self.last:
            return
        with torch.no_grad():
            for path in self.layers:
                w = _weight(self.model, path).to(self.w0[path].device)
                dm, dd = delta_md(self.w0[path], w)
                self.points.append({"step": step, "layer": path, "delta_m": dm,
                                    "delta_d": dd})


def _pearson(x: list[float], y: list[float]) -> float:
    """Pearson's r of two lists (nan when either is constant or there are < 3 points)."""
    if len(x) < 3:
        return math.nan
    t = torch.tensor([x, y], dtype=torch.float64)
    t = t - t.mean(dim=1, keepdim=True)
    den = float(t[0].norm() * t[1].norm())
    return float((t[0] * t[1]).sum()) / den if den > 0 else math.nan


def magnitude_direction(config: ExperimentConfig, runs: list[RunResult],
                        target_sets: list[tuple[str, tuple[str, ...]]] | None = None
                        ) -> MagnitudeDirection | None:
    """The traced runs' points, the correlation of ΔM with ΔD per method, and whether the
    signs are the paper's (full < 0, DoRA < 0, LoRA > 0); ``None`` without traces."""
    labels, module, _ = tracked_runs(config, target_sets=target_sets)
    traced = [r for r in runs if r.label in labels and r.direction_trace]
    if not traced:
        return None
    points, corr, within = [], {}, {}
    for r in traced:
        pts = [MDPoint(method=r.method, label=r.label, **p) for p in r.direction_trace]
        points += pts
        corr[r.method] = _pearson([p.delta_d for p in pts], [p.delta_m for p in pts])
        within[r.method] = _pearson(*_demeaned(pts))
    want = {m: METHOD_SPECS[m].paper_sign for m in TRACED}
    signs = {m: (c > 0) - (c < 0) for m, c in corr.items() if math.isfinite(c)}
    reproduced = ({m: signs.get(m) == s for m, s in want.items()}
                  if set(want) <= set(signs) else {})
    head = next((r for r in traced if method_spec(r.method).is_adapter), None)
    return MagnitudeDirection(
        module=module, rank=head.rank if head else None,
        targets=head.targets if head else config.targets[-1], points=points,
        correlation=corr, reproduced=reproduced, within_step=within)


def _demeaned(points: list[MDPoint]) -> tuple[list[float], list[float]]:
    """``(ΔD, ΔM)`` minus each step's mean over layers: what is left once the growth both
    share along training is removed."""
    by: dict[int, list[MDPoint]] = {}
    for p in points:
        by.setdefault(p.step, []).append(p)
    xs, ys = [], []
    for pts in by.values():
        mx = sum(p.delta_d for p in pts) / len(pts)
        my = sum(p.delta_m for p in pts) / len(pts)
        xs += [p.delta_d - mx for p in pts]
        ys += [p.delta_m - my for p in pts]
    return xs, ys
