"""What ``loralab finetune`` runs: :class:`ExperimentConfig` and the list of runs.

The preset (:mod:`.presets`) fixes sizes and schedules; the user picks the ranks, the target
sets and the seed. :func:`plan_runs` turns a config into the ordered list of runs:

    full fine-tuning; LoRA at every rank on every target set; rsLoRA (scale α/√r instead of
    α/r) at the larger ranks on the last target set.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from ..errors import LoralabError, check_choice
from ..lm.dist import DEVICES
from ..lm.model import config_hash
from .presets import CORPUS_VERSION, PRESETS, Preset, PresetSpec, parse_targets

__all__ = ["ExperimentConfig", "RunSpec", "plan_runs", "run_label"]


@dataclass(frozen=True)
class RunSpec:
    """One fine-tuning run: ``method`` full or lora; for LoRA its rank, targets and scale rule."""

    method: Literal["full", "lora"]
    rank: int | None = None
    targets: str = "all"
    modules: tuple[str, ...] = ()
    rslora: bool = False

    @property
    def label(self) -> str:
        """File-safe name: ``full``, ``lora-r8-attn``, ``rslora-r16-attn+mlp``."""
        return run_label(self.method, self.rank, self.targets, self.rslora)


def run_label(method: str, rank: int | None = None, targets: str = "all",
              rslora: bool = False) -> str:
    """The one spelling of a run's name: ``full``, ``lora-r8-attn``, ``rslora-r16-attn+mlp``."""
    if method == "full":
        return "full"
    return f"{'rslora' if rslora else 'lora'}-r{rank}-{targets}"


@dataclass(frozen=True)
class ExperimentConfig:
    """What ``loralab finetune`` runs.

    Attributes:
        preset: ``"quick"`` (seconds, used by the tests) or ``"default"`` (minutes).
        ranks: LoRA ranks, each ``1 ≤ r ≤ d_model`` of the preset.
        targets: target sets (see :func:`parse_targets`), e.g. ``("attn", "attn+mlp")``.
        seed: one seed for the base init, the data order of every run and LoRA's init.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        bf16: bfloat16 autocast for the matmuls (weights and optimizer stay fp32).
        lora_alpha: α; LoRA scales its update by α/r (rsLoRA runs: α/√r).
        rslora_ranks: ranks for the α/√r comparison; ``None`` = the two largest ranks,
            ``()`` = none.
        cache_dir: where pretrained bases are cached (``None``: ``$LORALAB_CACHE`` or
            ``~/.cache/loralab``).
    """

    preset: Preset = "default"
    ranks: tuple[int, ...] = (1, 2, 4, 8, 16)
    targets: tuple[str, ...] = ("attn", "attn+mlp")
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    lora_alpha: float = 16.0
    rslora_ranks: tuple[int, ...] | None = None
    cache_dir: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_choice("preset", self.preset, PRESETS)
        check_choice("device", self.device, DEVICES)
        width = self.spec.model.d_model
        ranks = tuple(self.ranks)
        if not ranks:
            raise LoralabError("ranks is empty; give at least one rank, e.g. 1,2,4,8,16")
        extra = self.rslora_ranks or ()
        for r in (*ranks, *extra):
            if isinstance(r, bool) or not isinstance(r, int) or r < 1:
                raise LoralabError(f"rank {r!r} is not allowed; ranks must be integers >= 1")
            if r > width:
                raise LoralabError(f"rank {r} is not allowed; the {self.preset} preset's "
                                   f"width is d_model={width}, so ranks must be <= {width}")
        object.__setattr__(self, "ranks", tuple(sorted(set(ranks))))
        if not self.targets:
            raise LoralabError("targets is empty; give e.g. attn or attn+mlp")
        labels = [parse_targets(t)[0] for t in self.targets]
        object.__setattr__(self, "targets", tuple(dict.fromkeys(labels)))
        if not self.lora_alpha > 0:
            raise LoralabError(f"lora_alpha={self.lora_alpha} is not allowed; it must be > 0")

    @property
    def spec(self) -> PresetSpec:
        """The preset's sizes and schedules."""
        return PRESETS[self.preset]

    def with_changes(self, **changes: object) -> ExperimentConfig:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    def base_key(self) -> str:
        """Cache key of the pretrained base: model, pretraining schedule, corpus, seed."""
        s = self.spec
        return config_hash(CORPUS_VERSION, s.model, s.pretrain, s.n_pretrain_lines,
                           s.n_val_lines, self.seed, self.bf16)

    def key(self) -> str:
        """Key of the whole experiment (its resume folder)."""
        return config_hash(self.base_key(), self.spec, self.ranks, self.targets,
                           self.lora_alpha, self.effective_rslora_ranks)

    @property
    def effective_rslora_ranks(self) -> tuple[int, ...]:
        """The ranks of the α/√r comparison."""
        if self.rslora_ranks is not None:
            return tuple(sorted(set(self.rslora_ranks)))
        return self.ranks[-2:] if len(self.ranks) >= 2 else self.ranks


def plan_runs(config: ExperimentConfig) -> list[RunSpec]:
    """The runs in order: full, LoRA (targets × ranks), rsLoRA on the last target set."""
    runs = [RunSpec("full")]
    for t in config.targets:
        label, modules = parse_targets(t)
        runs += [RunSpec("lora", r, label, modules) for r in config.ranks]
    if config.effective_rslora_ranks:
        label, modules = parse_targets(config.targets[-1])
        runs += [RunSpec("lora", r, label, modules, rslora=True)
                 for r in config.effective_rslora_ranks]
    return runs
