"""What a study asks: its name, its learning-rate grid and, for placement, the matched ranks.

A *study* (:class:`StudyConfig`) reuses the experiment's runs
(:class:`~loralab.results.finetune_config.RunSpec`, with a per-run learning rate) to
reproduce one published claim:

* ``lr``: full fine-tuning and LoRA at every rank (on the last target set, ``attn+mlp`` by
  default) at each learning rate of a log grid, same steps and data. Schulman and Thinking
  Machines (2025, "LoRA Without Regret"): LoRA's best learning rate is about 10× full
  fine-tuning's and nearly independent of the rank, with α fixed and the 1/r scale.
* ``placement``: LoRA on attention only, on the MLP only and on all linear layers, at ranks
  chosen so the trainable-parameter counts match (:func:`placement_ranks`), full
  fine-tuning beside. The same paper: all layers, and the MLP, do at least as well as
  attention only at equal parameter counts.

A LoRA layer on a ``(d_out, d_in)`` weight trains ``r·(d_in + d_out)`` parameters, so a set
of layers trains ``r·P`` with ``P = Σ (d_in + d_out)`` over its layers (its *width*); at the
budget of all linear layers at rank ``r_all``, each set's rank is ``round(r_all·P_all / P_set)``.
The tiny LM's widths follow from its config (:func:`tiny_widths`); a ``--model``'s from its
layers' shapes once it is loaded (:func:`loralab.experiment.studies.model_widths`), its sets
being ``attn`` (q/k/v/o_proj), ``mlp`` (gate/up/down_proj) and both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import LoralabError
from ..lm.model import TinyLMConfig
from .finetune_config import ExperimentConfig, RunSpec, lr_tag
from .presets import TARGET_PRESETS, parse_targets

__all__ = ["DEFAULT_LRS", "PLACEMENT_SETS", "PLACEMENT_TOLERANCE", "REAL_LRS", "STUDY_NAMES",
           "REAL_STUDY_RANKS", "STUDY_RANKS", "STUDY_STEPS", "Study", "StudyConfig",
           "check_lrs", "placement_ranks", "set_width", "tiny_widths"]

Study = Literal["lr", "placement"]
STUDY_NAMES: tuple[str, ...] = get_args(Study)
# Half-decade grids: 1e-4 … 1e-1 for the tiny LM (its presets train at 3e-3 and 5e-3), and a
# small one around a pretrained model's 2e-5 (full) and 2e-4 (LoRA) for a real model.
DEFAULT_LRS: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
REAL_LRS: tuple[float, ...] = (2e-5, 2e-4, 2e-3)
STUDY_RANKS: dict[str, tuple[int, ...]] = {"lr": (1, 4, 16), "placement": (4, 16)}
# SmolLM2's MLP (gate, up, down: 3·(d + d_ff) a layer) cannot match r_all = 4 within 5 %
REAL_STUDY_RANKS: dict[str, tuple[int, ...]] = {"lr": (1, 4, 16), "placement": (8, 32)}
STUDY_STEPS: dict[str, int] = {"lr": 80, "placement": 150}   # the tiny LM's, per run
PLACEMENT_SETS: tuple[str, ...] = ("attn", "mlp", "attn+mlp")
PLACEMENT_TOLERANCE = 0.05     # matched counts within 5 % of the all-linear budget


def check_lrs(lrs: tuple[float, ...]) -> tuple[float, ...]:
    """The grid sorted and without repeats; a non-positive, non-finite or non-number rate,
    an empty grid or two rates with one label raise ``LoralabError``."""
    if not lrs:
        raise LoralabError("the learning-rate grid is empty; give e.g. 1e-4,1e-3,1e-2")
    for lr in lrs:
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) \
                or lr <= 0:
            raise LoralabError(f"learning rate {lr!r} is not allowed; each must be a finite "
                               "number > 0, e.g. 1e-4,1e-3,1e-2")
    grid = tuple(sorted({float(x) for x in lrs}))
    tags = [lr_tag(x) for x in grid]
    if len(set(tags)) < len(tags):
        raise LoralabError(f"learning rates {', '.join(map(str, grid))} are not allowed: two "
                           "round to one label (2 significant digits); space them further")
    return grid


def set_width(model: TinyLMConfig, label: str) -> int:
    """``P = Σ (d_in + d_out)`` over the layers of target set ``label`` in every block of the
    tiny LM (q, k, v, o: ``(d, d)``; up: ``(d_ff, d)``; down: ``(d, d_ff)``): a LoRA of rank
    ``r`` on that set trains ``r·P`` parameters."""
    d, f = model.d_model, model.d_ff or 4 * model.d_model
    each = {"q_proj": 2 * d, "k_proj": 2 * d, "v_proj": 2 * d, "o_proj": 2 * d,
            "up_proj": d + f, "down_proj": d + f}
    return model.n_layers * sum(each[m] for m in TARGET_PRESETS[label])


def tiny_widths(model: TinyLMConfig) -> dict[str, int]:
    """``{set: P}`` of the placement sets (:data:`PLACEMENT_SETS`) on the tiny LM."""
    return {label: set_width(model, label) for label in PLACEMENT_SETS}


def _matched(widths: Mapping[str, int], rank_all: int, label: str,
             max_rank: int | None) -> tuple[int, float, bool]:
    """``(rank, off, ok)`` of set ``label`` at the budget of all linear layers at ``rank_all``."""
    budget = rank_all * widths["attn+mlp"]
    rank = max(1, round(budget / widths[label]))
    off = rank * widths[label] / budget - 1
    return rank, off, abs(off) <= PLACEMENT_TOLERANCE and (max_rank is None or rank <= max_rank)


def placement_ranks(widths: Mapping[str, int], rank_all: int,
                    max_rank: int | None = None) -> dict[str, int]:
    """``{set: rank}`` for attention only, MLP only and all linear layers (the keys of
    :data:`PLACEMENT_SETS`, ``widths[set] = P``) at the parameter budget of all linear layers
    at ``rank_all`` (``rank = max(1, round(r_all·P_all/P))``); raises ``LoralabError`` when a
    set's count misses the budget by more than :data:`PLACEMENT_TOLERANCE` or its rank
    exceeds ``max_rank`` (the smallest ``min(d_out, d_in)`` of the layers), naming budgets
    that do match."""
    budget = rank_all * widths["attn+mlp"]
    out = {}
    for label in PLACEMENT_SETS:
        rank, off, ok = _matched(widths, rank_all, label, max_rank)
        if not ok:
            fits = [r for r in range(1, 129) if all(
                _matched(widths, r, s, max_rank)[2] for s in PLACEMENT_SETS)][:4]
            too_big = max_rank is not None and rank > max_rank
            raise LoralabError(
                f"rank {rank_all} is not allowed for the placement study: {label} at rank "
                f"{rank} trains {rank * widths[label]:,} parameters against {budget:,} "
                f"({100 * off:+.1f} %, more than {100 * PLACEMENT_TOLERANCE:.0f} % off"
                f"{f', or past the rank bound {max_rank}' if too_big else ''}); "
                + (f"ranks that match here: {','.join(map(str, fits))}" if fits
                   else "no rank up to 128 matches on this model"))
        out[label] = rank
    return out


@dataclass(frozen=True)
class StudyConfig:
    """Which study runs (``name``: :data:`STUDY_NAMES`) and the lr study's grid ``lrs``
    (``None``: :data:`DEFAULT_LRS`, or :data:`REAL_LRS` on a ``--model``, :meth:`grid`;
    stored sorted). Validated here; :meth:`prepare` checks it against an experiment's
    config and returns the config the study runs."""

    name: Study
    lrs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.name not in STUDY_NAMES:
            raise LoralabError(f"study {self.name!r} is not allowed; choose one of "
                               f"{', '.join(STUDY_NAMES)}")
        if self.lrs is not None:
            if self.name != "lr":
                raise LoralabError(f"a learning-rate grid is not allowed with the {self.name} "
                                   "study; it trains at the preset's learning rates")
            object.__setattr__(self, "lrs", check_lrs(tuple(self.lrs)))

    def grid(self, config: ExperimentConfig) -> tuple[float, ...]:
        """The lr study's learning rates for ``config`` (ascending)."""
        return self.lrs or (DEFAULT_LRS if config.model is None else REAL_LRS)

    def prepare(self, config: ExperimentConfig) -> ExperimentConfig:
        """``config`` as the study runs it, checked: methods full and lora, no rsLoRA; the
        lr study on the last target set given, placement on attn, mlp and attn+mlp (the
        tiny LM's matched counts within :data:`PLACEMENT_TOLERANCE` here, a model's once it
        is loaded)."""
        if self.name == "placement" and config.model is None:
            d = config.spec.model.d_model
            for r in config.ranks:
                placement_ranks(tiny_widths(config.spec.model), r, max_rank=d)
        targets = PLACEMENT_SETS if self.name == "placement" else config.targets[-1:]
        return config.with_changes(methods=("full", "lora"), rslora_ranks=(),
                                   targets=targets)

    def runs(self, config: ExperimentConfig, target_sets: list[tuple[str, tuple[str, ...]]],
             widths: Mapping[str, int] | None = None, max_rank: int | None = None
             ) -> list[RunSpec]:
        """The study's runs. ``lr``: at each rate of the grid (ascending) full
        fine-tuning, then LoRA at every rank on the last target set. ``placement``: full
        fine-tuning, then for every rank ``r_all`` LoRA on attention only, the MLP only and
        all linear layers (``target_sets`` in that order, as resolved on the model) at the
        ranks of :func:`placement_ranks` for ``widths`` (default: the tiny LM's; a model's
        before it is loaded: every set at ``r_all``, enough to count the steps)."""
        if self.name == "lr":
            label, mods = target_sets[-1]
            return [run for lr in self.grid(config) for run in (
                RunSpec("full", lr=lr), *(RunSpec("lora", r, label, mods, lr=lr)
                                          for r in config.ranks))]
        if widths is None:
            widths = (tiny_widths(config.spec.model) if config.model is None
                      else dict.fromkeys(PLACEMENT_SETS, 1))
            max_rank = config.spec.model.d_model if config.model is None else None
        sets = dict(zip(PLACEMENT_SETS, target_sets, strict=False))
        runs = [RunSpec("full")]
        for r_all in config.ranks:
            for key, rank in placement_ranks(widths, r_all, max_rank).items():
                run = RunSpec("lora", rank, *(sets.get(key) or parse_targets(key)))
                if run not in runs:
                    runs.append(run)
        return runs
