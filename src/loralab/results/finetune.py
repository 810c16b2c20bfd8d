"""Result types of the fine-tuning experiment: plain dataclasses, nothing above them imported.

:class:`ExperimentResult` holds the config, the base, one :class:`RunResult` per run and the
:class:`Analysis`; ``to_dict()`` is ``results.json`` and :func:`result_from_dict` reads it
back. :mod:`loralab.experiment` fills them; :mod:`loralab.plots` and :mod:`loralab.report`
read them. Which runs a comparison shows: :mod:`.headline`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import LoralabError
from ..fileio import to_jsonable
from .finetune_config import ExperimentConfig, RunOptions, run_label
from .floor import Floor
from .forgetting import Forgetting, forgetting_from_dict
from .intruders import Intruders, intruders_from_dict
from .study import StudyResult, study_from_dict
from .validate import check_numbers

__all__ = [
    "CONFIG_KEYS",
    "Amplification",
    "AmplificationRow",
    "Analysis",
    "BaseInfo",
    "ExperimentResult",
    "LayerSpectrum",
    "MDPoint",
    "MagnitudeDirection",
    "MergeCheck",
    "RsLoraRow",
    "RunResult",
    "Sample",
    "Targets",
    "TruncationRow",
    "config_dict",
    "config_from_dict",
    "result_from_dict",
]


@dataclass
class MergeCheck:
    label: str
    max_abs_logit: float              # scale of the logits compared
    max_abs_logit_diff: float         # fp32: merged vs unmerged
    max_abs_logit_diff_fp64: float    # fp64: W0 + ΔW in a plain copy vs the unmerged model
    fp32_error: float                 # fp32 vs fp64 logits of the unmerged model: fp32's noise
    reload_max_abs_logit_diff: float  # save_adapter -> load_adapter into a fresh base
    val_loss_unmerged: float
    val_loss_merged: float
    passed: bool                      # fp32 diff and reload diff <= 1e-5

    @property
    def passed_fp64(self) -> bool:
        """The merge identity itself: merged == unmerged to 1e-9 in float64."""
        return self.max_abs_logit_diff_fp64 <= 1e-9


@dataclass
class LayerSpectrum:
    name: str              # e.g. blocks.1.attn.q_proj
    module: str            # q_proj
    layer: int
    shape: list[int]       # [d_out, d_in]
    delta_norm: float      # ‖ΔW‖_F
    relative_norm: float   # ‖ΔW‖_F / ‖W0‖_F
    rank90: int            # smallest r with Σ_{i≤r} σ_i² ≥ 0.9 Σ σ_i²
    singular_values: list[float]


@dataclass
class TruncationRow:
    targets: str
    rank: int | None       # None: ΔW_full untruncated (on the target layers only)
    val_loss_truncated: float
    energy_kept: float     # mean over layers of Σ_{i≤r} σ_i² / Σ σ_i²
    val_loss_lora: float | None


@dataclass
class AmplificationRow:
    source: str            # "lora" (the ΔW LoRA learned at this rank) or "full" (ΔW_full)
    rank: int
    delta_norm: float      # ‖ΔW‖_F
    proj_delta: float      # ‖Uᵀ W0 V‖_F, U, V: top-r singular vectors of ΔW
    proj_w: float          # same with W0's own top-r singular vectors
    proj_random: float     # same with random orthonormal U, V
    factor: float          # ‖ΔW‖_F / ‖Uᵀ W0 V‖_F


@dataclass
class Amplification:
    layer: str
    w_norm: float
    rows: list[AmplificationRow] = field(default_factory=list)


@dataclass
class RsLoraRow:
    rank: int
    targets: str
    scaling_alpha_over_r: float
    scaling_alpha_over_sqrt_r: float
    val_loss_alpha_over_r: float
    val_loss_alpha_over_sqrt_r: float


@dataclass
class Sample:
    prompt: str
    prompt_english: str
    outputs: dict[str, str]
    english: dict[str, str]


@dataclass
class Targets:
    """The issue's four targets, measured (ratios, and whether each is met)."""

    lora_label: str
    full_val_loss: float
    lora_val_loss: float
    val_gap_percent: float          # target ≤ 5
    step_time_ratio: float          # LoRA / full, target ≤ 0.8
    optimizer_state_ratio: float    # full / LoRA, target ≥ 20
    base_val_loss: float
    base_over_full: float           # base / full val loss: "clearly worse" = well above 1
    base_over_lora: float
    met: dict[str, bool] = field(default_factory=dict)


@dataclass
class MDPoint:
    """One layer of one traced run at one step: DoRA's ``ΔM`` and ``ΔD`` against ``W0``."""

    method: str
    label: str
    step: int
    layer: str
    delta_m: float         # (1/d_out) Σ_n |‖W_n‖ − ‖W0_n‖|
    delta_d: float         # (1/d_out) Σ_n (1 − cos(W_n, W0_n))


@dataclass
class MagnitudeDirection:
    """DoRA's Figure 2 measured here: ΔM against ΔD of one projection in every layer over
    training, for full fine-tuning, LoRA and DoRA (:mod:`loralab.experiment.direction`)."""

    module: str
    rank: int | None
    targets: str
    points: list[MDPoint]
    correlation: dict[str, float]       # Pearson r of (ΔD, ΔM) per method, all points
    reproduced: dict[str, bool]         # the paper's sign (full < 0, lora > 0, dora < 0) holds
    within_step: dict[str, float] = field(default_factory=dict)   # r after removing each
    #                                     step's mean: across layers, not along training


@dataclass
class Analysis:
    merge_checks: list[MergeCheck]
    spectra: list[LayerSpectrum]
    truncation: list[TruncationRow]
    amplification: Amplification | None
    rslora: list[RsLoraRow]
    samples: list[Sample]
    pig_latin_word_rate: dict[str, float]
    targets: Targets | None            # LoRA r≈8 on the last target set (the headline)
    targets_by_set: list[Targets]      # the same for every target set, then rsLoRA r≈8
    magnitude_direction: MagnitudeDirection | None = None
    forgetting: Forgetting | None = None          # learning against forgetting, per run
    intruders: Intruders | None = None            # intruder dimensions, the λ mitigation


@dataclass
class RunResult:
    """One fine-tuning run's numbers (``to_dict`` is its entry in ``runs`` of the JSON)."""

    label: str
    method: str
    rank: int | None
    targets: str
    modules: list[str]
    rslora: bool
    scaling: float | None
    trainable_params: int
    total_params: int
    final_val_loss: float
    step_time_s: float
    tokens_per_s: float
    flops_per_s: float
    mfu: float
    optimizer_state_bytes: int
    peak_memory_bytes: int
    peak_memory_kind: str
    wall_s: float
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    resumed_from: int | None = None
    initial_val_loss: float | None = None       # before the first step (B = 0: the base's)
    steps_to_full_loss: int | None = None       # first val step at or below full FT's final
    base_weight_bytes: int = 0                  # the frozen base's tensors (NF4: packed)
    direction_trace: list[dict] = field(default_factory=list)   # DoRA's view, traced runs
    general_val_loss: float | None = None       # the source domain's val loss, after: the
    #                                             tiny LM's held-out pretraining English, a
    #                                             real-model preset's general text
    lr: float | None = None                     # a study's run: its learning rate

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_params / self.total_params

    def to_dict(self) -> dict:
        return {**asdict(self), "trainable_percent": self.trainable_percent}


@dataclass
class BaseInfo:
    """The pretrained base: where it is cached, how good it is on both tasks, and the
    SHA-256 of its tensors (``sha256``, which keys the resume state)."""

    key: str
    path: str
    cached: bool
    params: int
    pretrain_val_loss: float | None       # None: a transformers model, not pretrained here
    finetune_val_loss: float
    pretrain_wall_s: float
    pretrain_history: dict = field(default_factory=dict)
    sha256: str = ""
    general_val_loss: float | None = None   # the source domain's val loss, before (as
    #                                         RunResult.general_val_loss)


@dataclass
class ExperimentResult:
    """Everything the experiment measured; ``to_dict()`` is what ``--json`` writes.

    ``analysis`` holds the :class:`Analysis` (merge checks, ΔW spectra, truncation,
    amplification, rsLoRA, samples, targets) once :func:`loralab.experiment.analysis.analyse`
    has run; ``options``: how it ran (the JSON's ``config`` holds both, :data:`CONFIG_KEYS`).
    """

    config: ExperimentConfig
    device: str
    world_size: int
    base: BaseInfo
    runs: list[RunResult]
    analysis: Analysis | None = None
    wall_s: float = 0.0
    out_dir: str | None = None
    data: dict = field(default_factory=dict)     # --data/--model: the text, its split, tokens
    memory: list[dict] = field(default_factory=list)   # the plan's memory estimate per kind
    options: RunOptions = field(default_factory=RunOptions)
    floor: Floor | None = None        # the least wall time its FLOPs allow (results.floor)
    study: StudyResult | None = None             # a study's curves/table and verdicts

    @property
    def base_val_loss(self) -> float:
        """The base model's val loss on the fine-tuning task (before any fine-tuning)."""
        return self.base.finetune_val_loss

    def run(self, label: str) -> RunResult:
        """The run named ``label`` (``full``, ``lora-r8-attn``, ...)."""
        for r in self.runs:
            if r.label == label:
                return r
        raise KeyError(label)

    def lora_run(self, rank: int, targets: str, rslora: bool = False) -> RunResult | None:
        """The LoRA (or rsLoRA) run at ``rank`` on ``targets``, if the experiment had it."""
        label = run_label("rslora" if rslora else "lora", rank, targets)
        return next((r for r in self.runs if r.label == label), None)

    def to_dict(self) -> dict:
        cfg = config_dict(self.config, self.options)
        return {
            "config": cfg, "preset": self.config.spec.to_dict(), "device": self.device,
            "world_size": self.world_size, "base_val_loss": self.base_val_loss,
            "base": asdict(self.base), "runs": [r.to_dict() for r in self.runs],
            **(to_jsonable(self.analysis) if self.analysis is not None else {}),
            "wall_s": self.wall_s, "data": self.data, "memory_estimates": self.memory,
            "floor": self.floor.to_dict() if self.floor is not None else None,
            **({"study": self.study.to_dict()} if self.study is not None else {}),
        }


def _floor_from_dict(data: dict | None) -> Floor | None:
    if data is None:
        return None
    return Floor(**{k: data[k] for k in ("train_flops", "evaluate_flops", "analysis_flops",
                                         "peak_flops", "wall_s")},
                 restored_runs=int(data.get("restored_runs", 0)))


def _md_from_dict(data: dict | None) -> MagnitudeDirection | None:
    if data is None:
        return None
    return MagnitudeDirection(**{**data, "points": [MDPoint(**p) for p in data["points"]]})


# The JSON's "config": the config's and the options' fields in one dict, in this order (the
# order results.json has always had; the cache folder is the machine's, not the result's).
CONFIG_KEYS: tuple[str, ...] = (
    "preset", "methods", "ranks", "targets", "seed", "device", "bf16", "lora_alpha",
    "rslora_ranks", "data", "model", "revision", "steps", "batch", "fsdp",
    "grad_checkpointing", "jobs", "threads")


def config_dict(config: ExperimentConfig, options: RunOptions) -> dict:
    """The JSON's ``config``: ``config`` and ``options`` in :data:`CONFIG_KEYS` order."""
    both = {**asdict(config), **asdict(options)}
    return {k: both[k] for k in CONFIG_KEYS}


def config_from_dict(cfg: dict) -> tuple[ExperimentConfig, RunOptions]:
    """:func:`config_dict` read back (validated again; an unknown key is a ``TypeError``)."""
    cfg = dict(cfg)
    for key in ("methods", "ranks", "targets", "rslora_ranks"):
        cfg[key] = tuple(cfg[key]) if cfg.get(key) is not None else None
    how = {f.name for f in fields(RunOptions)}
    return (ExperimentConfig(**{k: v for k, v in cfg.items() if k not in how}),
            RunOptions(**{k: v for k, v in cfg.items() if k in how}))


def result_from_dict(data: dict) -> ExperimentResult:
    """Rebuild an :class:`ExperimentResult` from ``to_dict()`` / ``results.json`` (so tables
    and figures can be redrawn without training again). Raises ``LoralabError`` if it is not
    such a dict."""
    try:
        config, options = config_from_dict(data["config"])
        runs = [RunResult(**{k: v for k, v in r.items() if k != "trainable_percent"})
                for r in data["runs"]]
        amp = data.get("amplification")
        analysis = Analysis(
            merge_checks=[MergeCheck(**c) for c in data["merge_checks"]],
            spectra=[LayerSpectrum(**x) for x in data["spectra"]],
            truncation=[TruncationRow(**x) for x in data["truncation"]],
            amplification=None if amp is None else Amplification(
                layer=amp["layer"], w_norm=amp["w_norm"],
                rows=[AmplificationRow(**x) for x in amp["rows"]]),
            rslora=[RsLoraRow(**x) for x in data["rslora"]],
            samples=[Sample(**x) for x in data["samples"]],
            pig_latin_word_rate=data["pig_latin_word_rate"],
            targets=Targets(**data["targets"]) if data.get("targets") else None,
            targets_by_set=[Targets(**x) for x in data["targets_by_set"]],
            magnitude_direction=_md_from_dict(data.get("magnitude_direction")),
            forgetting=forgetting_from_dict(data.get("forgetting")),
            intruders=intruders_from_dict(data.get("intruders")))
        result = ExperimentResult(config=config, options=options, device=data["device"],
                                  world_size=data["world_size"],
                                  base=BaseInfo(**data["base"]), runs=runs, analysis=analysis,
                                  wall_s=data["wall_s"], data=data.get("data") or {},
                                  memory=data.get("memory_estimates") or [],
                                  floor=_floor_from_dict(data.get("floor")),
                                  study=study_from_dict(data.get("study")))
    except (KeyError, TypeError, AttributeError, LoralabError) as exc:
        raise LoralabError(f"not a loralab finetune result ({type(exc).__name__}: {exc}); "
                           "give a results.json written by 'loralab finetune'") from None
    try:                            # a string where a loss belongs, a NaN loss: refused here
        check_numbers(result)
    except LoralabError as exc:
        raise LoralabError(f"not a loralab finetune result: {exc}; give a results.json "
                           "written by 'loralab finetune' (rerun it)") from None
    return result
