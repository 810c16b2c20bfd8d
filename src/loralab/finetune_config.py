"""Configuration of the fine-tuning experiment: presets, target sets, the list of runs.

A *preset* fixes the model size, the corpus sizes and the three training schedules
(pretraining, full fine-tuning, LoRA fine-tuning). The user picks the ranks, the target
sets and the seed. :func:`plan_runs` turns a config into the ordered list of runs:

    full fine-tuning; LoRA at every rank on every target set; rsLoRA (scale α/√r instead of
    α/r) at the larger ranks on the last target set.

Target sets are written as module names or presets joined by ``+`` or ``,``:
``attn`` = ``q_proj+k_proj+v_proj+o_proj``, ``mlp`` = ``up_proj+down_proj``,
``attn+mlp`` = all six, ``q_proj,v_proj`` = just those two (the LoRA paper's choice).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from .errors import LoralabError
from .tinylm import ATTN_MODULES, MLP_MODULES, TinyLMConfig, config_hash
from .train import TrainConfig

__all__ = [
    "PRESETS",
    "ExperimentConfig",
    "Preset",
    "PresetSpec",
    "RunSpec",
    "parse_targets",
    "plan_runs",
]

Preset = Literal["quick", "default"]
TARGET_PRESETS: dict[str, tuple[str, ...]] = {
    "attn": ATTN_MODULES, "mlp": MLP_MODULES, "attn+mlp": ATTN_MODULES + MLP_MODULES,
}
MODULES: tuple[str, ...] = ATTN_MODULES + MLP_MODULES
CORPUS_VERSION = "pig-latin-1"


@dataclass(frozen=True)
class PresetSpec:
    """Sizes and schedules of one preset (see :data:`PRESETS`)."""

    model: TinyLMConfig
    pretrain: TrainConfig
    full: TrainConfig
    lora: TrainConfig
    n_pretrain_lines: int
    n_finetune_lines: int
    n_val_lines: int
    n_samples: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


def _schedule(steps: int, lr: float, batch: int, warmup: int, every: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup_steps=warmup,
                       eval_every=every, eval_batches=None)


PRESETS: dict[str, PresetSpec] = {
    # ≈ 15 s on 2 CPU cores: a 2-layer d=64 model, short schedules.
    "quick": PresetSpec(
        model=TinyLMConfig(d_model=64, n_layers=2, n_heads=4, block_size=32),
        pretrain=_schedule(300, 3e-3, 16, 30, 50),
        full=_schedule(60, 3e-3, 16, 6, 10),
        lora=_schedule(60, 1e-2, 16, 6, 10),
        n_pretrain_lines=4_000, n_finetune_lines=1_500, n_val_lines=150, n_samples=3,
    ),
    # ≈ 4 minutes on 2 CPU cores: a 4-layer d=128 model (0.8 M parameters).
    "default": PresetSpec(
        model=TinyLMConfig(d_model=128, n_layers=4, n_heads=4, block_size=64),
        pretrain=_schedule(1_000, 3e-3, 16, 50, 250),
        full=_schedule(300, 3e-3, 16, 20, 30),
        lora=_schedule(300, 5e-3, 16, 20, 30),
        n_pretrain_lines=20_000, n_finetune_lines=4_000, n_val_lines=200, n_samples=4,
    ),
}


def parse_targets(text: str) -> tuple[str, tuple[str, ...]]:
    """``"attn+mlp"`` -> ``("attn+mlp", (q_proj, k_proj, v_proj, o_proj, up_proj, down_proj))``.

    Items are joined by ``+`` or ``,``; each is a preset (attn, mlp) or a module name.
    The label is a preset name when the set equals one, else the module names joined by ``+``.
    """
    items = [p.strip() for p in re.split(r"[+,]", text) if p.strip()]
    if not items:
        raise LoralabError(f"target set {text!r} is empty; give e.g. attn, attn+mlp or "
                           "q_proj,v_proj")
    chosen: set[str] = set()
    for item in items:
        if item in TARGET_PRESETS:
            chosen.update(TARGET_PRESETS[item])
        elif item in MODULES:
            chosen.add(item)
        else:
            raise LoralabError(f"target module {item!r} is not allowed; choose from "
                               f"{', '.join(MODULES)} or the presets attn, mlp, attn+mlp")
    modules = tuple(m for m in MODULES if m in chosen)
    label = next((k for k, v in TARGET_PRESETS.items() if set(v) == chosen), "+".join(modules))
    return label, modules


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
        if self.method == "full":
            return "full"
        return f"{'rslora' if self.rslora else 'lora'}-r{self.rank}-{self.targets}"


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
        from .dist import DEVICES

        if self.preset not in PRESETS:
            raise LoralabError(f"preset {self.preset!r} is not allowed; choose one of "
                               f"{', '.join(PRESETS)}")
        if self.device not in DEVICES:
            raise LoralabError(f"device {self.device!r} is not allowed; choose one of "
                               f"{', '.join(DEVICES)}")
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
