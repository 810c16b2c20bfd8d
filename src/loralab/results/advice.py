"""What ``loralab advise`` is asked (:class:`AdviceConfig`) and what it found (:class:`Advice`).

The advice is a rank and an α per module (PEFT's ``rank_pattern`` / ``alpha_pattern``),
measured from the spectrum of a short probe per module (:data:`Probe`), and its own check: a
LoRA run with the pattern against one at a uniform rank with the same trainable-parameter
count, same steps and data (:class:`AdviceCheck`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..errors import LoralabError, check_choice
from .presets import PRESETS

__all__ = ["PROBES", "Advice", "AdviceCheck", "AdviceConfig", "ModuleAdvice", "Probe"]

Probe = Literal["grad", "full"]
PROBES: dict[Probe, str] = {
    "grad": "the gradient of each target weight summed over the probe's batches, at the base "
            "(no update; the cheaper probe)",
    "full": "the update W − W0 of each target weight after the probe's steps of full "
            "fine-tuning (the experiment's own loop and learning rate)",
}


@dataclass(frozen=True)
class AdviceConfig:
    """What ``loralab advise`` computes.

    Attributes:
        preset: the experiment's preset (sizes, schedules, learning rates): ``quick``,
            ``default`` or ``smollm2``.
        model, data: as ``loralab finetune``'s ``--model`` / ``--data`` (``None``: the tiny
            LM, the Pig Latin task).
        targets: one target set (``attn``, ``attn+mlp``, module names joined by ``+``).
        probe: :data:`Probe`; ``probe_steps``: its batches (``grad``) or steps (``full``).
        energy: each module's rank keeps this share of its spectrum's energy, in (0, 1);
            ``budget``: instead, the trainable parameters to spend (≥ 1). One of the two.
        check: also train the pattern against uniform rank at the same count.
        steps, batch: each check run's steps and batch (``None``: the preset's).
        lora_alpha: α of the uniform run; the pattern keeps its scale α/r on every module.
        seed: one seed for everything.
    """

    preset: str = "quick"
    model: str | None = None
    data: str | None = None
    targets: str = "attn+mlp"
    probe: Probe = "grad"
    probe_steps: int = 8
    energy: float | None = None
    budget: int | None = None
    check: bool = True
    steps: int | None = None
    batch: int | None = None
    lora_alpha: float = 16.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("preset", self.preset, PRESETS)
        check_choice("probe", self.probe, PROBES)
        if self.energy is not None and self.budget is not None:
            raise LoralabError("energy and budget are not allowed together; give one")
        if self.energy is None and self.budget is None:
            object.__setattr__(self, "energy", 0.9)
        if self.energy is not None and not (isinstance(self.energy, float | int)
                                            and 0.0 < self.energy < 1.0):
            raise LoralabError(f"energy={self.energy!r} is not allowed; give a share in "
                               "(0, 1), e.g. 0.9")
        if self.budget is not None and (isinstance(self.budget, bool)
                                        or not isinstance(self.budget, int)
                                        or not 1 <= self.budget <= 10**12):
            raise LoralabError(f"budget={self.budget!r} is not allowed; give a number of "
                               "trainable parameters in 1..10^12")
        v = self.probe_steps
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 10_000:
            raise LoralabError(f"probe_steps={v!r} is not allowed; give an integer in 1..10000")
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise LoralabError(f"lora_alpha={self.lora_alpha} is not allowed; it must be > 0")
        if not isinstance(self.targets, str) or not self.targets.strip(" +,"):
            raise LoralabError("targets is empty; give one set, e.g. attn or attn+mlp")


@dataclass
class ModuleAdvice:
    """One target module: its path, shape ``(d_out, d_in)``, the advised rank and α, and the
    share of its spectrum's energy that rank keeps; ``top``: its largest σ² shares."""

    path: str
    d_out: int
    d_in: int
    rank: int
    alpha: float
    energy_kept: float
    top: list[float] = field(default_factory=list)


@dataclass
class AdviceCheck:
    """The pattern against uniform rank: trainable parameters and final val loss of each, the
    base's val loss, the steps of each run."""

    uniform_rank: int
    uniform_params: int
    advised_params: int
    uniform_val_loss: float
    advised_val_loss: float
    base_val_loss: float
    steps: int

    @property
    def advice_wins(self) -> bool:
        return self.advised_val_loss < self.uniform_val_loss

    @property
    def param_ratio(self) -> float:
        """advised / uniform trainable parameters."""
        return self.advised_params / self.uniform_params


@dataclass
class Advice:
    """What ``loralab advise`` found: per module advice, the uniform rank of the same count,
    the adapter config (PEFT's ``adapter_config.json`` as a dict) and the check."""

    config: AdviceConfig
    modules: list[ModuleAdvice]
    uniform_rank: int
    lora_alpha: float
    adapter_config: dict
    probe_wall_s: float = 0.0
    check: AdviceCheck | None = None
    wall_s: float = 0.0

    @property
    def rank_pattern(self) -> dict[str, int]:
        return {m.path: m.rank for m in self.modules}

    @property
    def alpha_pattern(self) -> dict[str, float]:
        return {m.path: m.alpha for m in self.modules}

    def to_dict(self) -> dict:
        """Everything as JSON-ready data (``advice.json``)."""
        out = asdict(self)
        if self.check is not None:
            out["check"].update(advice_wins=self.check.advice_wins,
                                param_ratio=self.check.param_ratio)
        return out
