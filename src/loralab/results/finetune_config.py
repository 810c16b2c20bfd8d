"""What ``loralab finetune`` computes (:class:`ExperimentConfig`), how it runs
(:class:`RunOptions`), and the list of runs.

The preset (:mod:`.presets`) fixes sizes and schedules; the user picks the methods, the
ranks, the target sets and the seed. Apart from those stand the options that change where
and how fast the same numbers are computed (device, cache folder, side-by-side processes,
threads, FSDP, gradient checkpointing). :func:`plan_runs` turns a config into the ordered
list of runs:

    full fine-tuning; LoRA at every rank on every target set; rsLoRA (scale α/√r instead of
    α/r) at the larger ranks on the last target set; then each other method of
    :data:`METHODS` that was asked for at every rank on every target set.

The methods (:data:`METHOD_HELP` says each in a line): ``full``, ``lora``, ``rslora``,
``dora`` (magnitude × direction, Liu et al. 2024), ``loraplus`` (B at 16× A's learning rate,
Hayou et al. 2024), ``pissa`` / ``olora`` (the adapter starts as the top-r SVD / a QR of W0,
the base keeps the rest), ``qlora`` (the base in 4-bit NF4, Dettmers et al. 2023) and
``loftq`` (an NF4 base and an adapter that wins back part of its error, Li et al. 2023).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..choices import DEFAULT_METHODS, METHOD_HELP, METHODS
from ..errors import LoralabError, check_choice
from ..lm.bytes import BYTE_VOCAB
from ..lm.dist import DEVICES
from ..lm.model import config_hash
from ..method_specs import (
    LOFTQ_ITER,
    LORAPLUS_RATIO,
    METHOD_SPECS,
    Method,
    MethodSpec,
    method_spec,
)
from .presets import CORPUS_VERSION, PRESETS, Preset, PresetSpec, parse_targets

__all__ = ["ADAPTER_METHODS", "DEFAULT_METHODS", "LOFTQ_ITER", "LORAPLUS_RATIO", "METHODS",
           "METHOD_HELP", "QUANT_METHODS", "ExperimentConfig", "RunOptions", "RunSpec",
           "lr_tag", "plan_runs", "run_label"]

ADAPTER_METHODS: frozenset[str] = frozenset(m for m, s in METHOD_SPECS.items() if s.is_adapter)
QUANT_METHODS: frozenset[str] = frozenset(m for m, s in METHOD_SPECS.items() if s.quantizes)


@dataclass(frozen=True)
class RunSpec:
    """One fine-tuning run: its ``method`` (:data:`METHODS`; what it does is the method's
    record, :data:`~loralab.method_specs.METHOD_SPECS`), for an adapter its rank and
    targets, and in a study (:mod:`.study_plan`) its learning rate ``lr`` (``None``: the
    preset's); ``rank_pattern`` / ``alpha_pattern``: PEFT's per-module r and α as
    ``((module path, value), ...)`` (``loralab advise``'s pattern; empty: ``rank`` and α
    everywhere)."""

    method: Method
    rank: int | None = None
    targets: str = "all"
    modules: tuple[str, ...] = ()
    lr: float | None = None          # a study's learning rate (None: the preset's)
    rank_pattern: tuple[tuple[str, int], ...] = ()
    alpha_pattern: tuple[tuple[str, float], ...] = ()

    @property
    def method_spec(self) -> MethodSpec:
        """The method's record."""
        return method_spec(self.method)

    @property
    def rslora(self) -> bool:
        """The scale rule is α/√r (the ``rslora`` method's)."""
        return self.method_spec.rslora

    @property
    def label(self) -> str:
        """File-safe name: ``full``, ``lora-r8-attn``, ``dora-r16-attn+mlp``; a study's run
        ends in its learning rate (:func:`lr_tag`): ``lora-r4-attn+mlp-lr0.003``; a run with
        a rank pattern ends in ``-pattern``."""
        label = self.method_spec.run_label(self.rank, self.targets)
        label = label if self.lr is None else f"{label}-{lr_tag(self.lr)}"
        return f"{label}-pattern" if self.rank_pattern else label


def lr_tag(lr: float) -> str:
    """A learning rate as a run label's suffix (2 significant digits): ``0.003`` ->
    ``lr0.003``, ``2e-05`` -> ``lr2e-05``."""
    return f"lr{lr:.2g}"


def run_label(method: str, rank: int | None = None, targets: str = "all") -> str:
    """The one spelling of a run's name: ``full``, ``lora-r8-attn``, ``rslora-r16-attn+mlp``
    (:meth:`~loralab.method_specs.MethodSpec.run_label`)."""
    return method_spec(method).run_label(rank, targets)


@dataclass(frozen=True)
class ExperimentConfig:
    """What ``loralab finetune`` computes (how it runs: :class:`RunOptions`).

    Attributes:
        preset: ``"quick"`` (seconds, used by the tests) or ``"default"`` (minutes).
        methods: which methods run (:data:`METHODS`); default full, lora, rslora.
        ranks: LoRA ranks, each ``1 ≤ r ≤ d_model`` of the preset.
        targets: target sets (see :func:`parse_targets`), e.g. ``("attn", "attn+mlp")``.
        seed: one seed for the base init, the data order of every run and LoRA's init.
        bf16: bfloat16 autocast for the matmuls (weights and optimizer stay fp32). A "what",
            not a "how": it changes the numbers, and the cached base pretrained with it is
            another base (:meth:`base_key`).
        lora_alpha: α; LoRA scales its update by α/r (rsLoRA runs: α/√r).
        rslora_ranks: ranks for the α/√r comparison; ``None`` = the two largest ranks,
            ``()`` = none.
        data: the fine-tuning text instead of the Pig Latin task: a ``.txt`` file, a folder
            of them, a ``.jsonl`` with a ``text`` field or ``builtin:NAME``
            (:func:`loralab.lm.textdata.load_text`). With the tiny LM the base then uses the
            byte-level tokenizer (pretrained once on the same English, cached).
        model: a transformers causal LM (local folder or hub id) to fine-tune instead of the
            tiny LM; ``targets`` are then that model's module names (e.g. ``c_attn``).
        revision: the hub revision of ``model`` (hub ids only).
        steps: fine-tuning steps of every run (``None``: the preset's); evaluations stay
            about ten per run.
        batch: sequences per fine-tuning step (``None``: the preset's 16).
    """

    preset: Preset = "default"
    methods: tuple[str, ...] = DEFAULT_METHODS
    ranks: tuple[int, ...] = (1, 2, 4, 8, 16)
    targets: tuple[str, ...] = ("attn", "attn+mlp")
    seed: int = 0
    bf16: bool = False
    lora_alpha: float = 16.0
    rslora_ranks: tuple[int, ...] | None = None
    data: str | None = None
    model: str | None = None
    revision: str | None = None
    steps: int | None = None
    batch: int | None = None

    def __post_init__(self) -> None:
        check_choice("preset", self.preset, PRESETS)
        real = PRESETS[self.preset].real
        if real is not None:             # a real-model preset names its model and text
            if self.model is None:
                object.__setattr__(self, "model", real.model)
            if self.data is None:
                object.__setattr__(self, "data", real.data)
        self._check_methods()
        self._check_sources()
        width = self.spec.model.d_model if self.model is None else 1 << 30
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
        if self.model is None:           # a transformers model's names are known once loaded
            labels = [parse_targets(t)[0] for t in self.targets]
            object.__setattr__(self, "targets", tuple(dict.fromkeys(labels)))
        if not self.lora_alpha > 0:
            raise LoralabError(f"lora_alpha={self.lora_alpha} is not allowed; it must be > 0")

    def _check_sources(self) -> None:
        for name in ("steps", "batch"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)
                                  or not 1 <= v <= 1_000_000):
                raise LoralabError(f"{name}={v!r} is not allowed; give an integer in "
                                   "1..1000000")
        if self.revision is not None and self.model is None:
            raise LoralabError(f"revision={self.revision!r} is not allowed without a model; "
                               "it names a hub revision of --model")

    def _check_methods(self) -> None:
        methods = tuple(self.methods)
        if not methods:
            raise LoralabError("methods is empty; give at least one of " + ", ".join(METHODS))
        for m in methods:
            check_choice("method", m, METHODS)
        object.__setattr__(self, "methods", tuple(m for m in METHODS if m in methods))

    @property
    def spec(self) -> PresetSpec:
        """The preset's sizes and schedules; with ``data`` the tiny LM's vocabulary is the
        256 byte values; with ``steps`` both fine-tuning schedules run that many steps."""
        spec = PRESETS[self.preset]
        if self.data is not None and self.model is None:
            spec = replace(spec, model=replace(spec.model, vocab_size=BYTE_VOCAB))
        if self.steps is not None:
            every = max(1, self.steps // 10)
            warm = min(spec.lora.warmup_steps, max(0, self.steps // 10))
            spec = replace(spec, full=replace(spec.full, steps=self.steps, eval_every=every,
                                              warmup_steps=warm),
                           lora=replace(spec.lora, steps=self.steps, eval_every=every,
                                        warmup_steps=warm))
        if self.batch is not None:
            spec = replace(spec, full=replace(spec.full, batch_size=self.batch),
                           lora=replace(spec.lora, batch_size=self.batch))
        return spec

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
        extra = (LOFTQ_ITER, LORAPLUS_RATIO) if any(
            METHOD_SPECS[m].is_adapter and not METHOD_SPECS[m].default
            for m in self.methods) else ()
        return config_hash(self.base_key(), self.spec, self.ranks, self.targets,
                           self.lora_alpha, self.effective_rslora_ranks, *extra,
                           *self.source_key())

    def source_key(self) -> tuple:
        """What the data and model are, for the keys (empty for the built-in task, so its
        keys are what they were)."""
        if self.data is None and self.model is None and self.batch is None:
            return ()
        return ("data", self.data, "model", self.model, self.revision, self.batch)

    @property
    def effective_rslora_ranks(self) -> tuple[int, ...]:
        """The ranks of the α/√r comparison (none without the ``rslora`` method)."""
        if "rslora" not in self.methods:
            return ()
        if self.rslora_ranks is not None:
            return tuple(sorted(set(self.rslora_ranks)))
        return self.ranks[-2:] if len(self.ranks) >= 2 else self.ranks


@dataclass(frozen=True)
class RunOptions:
    """How ``loralab finetune`` runs: where and how fast, never which numbers come out (the
    same config gives the same results under any options, up to the device's arithmetic).

    Attributes:
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        cache_dir: where pretrained bases are cached (``None``: ``$LORALAB_CACHE`` or
            ``~/.cache/loralab``).
        fsdp: under ``torchrun``, shard each run's model with FSDP2 instead of DDP (methods
            full, lora, rslora; no Ctrl-C checkpoint inside a run).
        grad_checkpointing: recompute each block's activations in the backward (less memory,
            more time; the same numbers).
        jobs: runs trained side by side, one process each (:mod:`loralab.experiment.jobs`,
            CPU, Linux): ``1`` one after another (the default here), ``0`` one per free core
            for a tiny model, else 1 (:func:`loralab.threads.run_layout`); the same numbers
            either way.
        threads: torch threads of each side-by-side process (``0``: one for a tiny model);
            a sequential sweep keeps the process's count.
    """

    device: str = "auto"
    cache_dir: str | None = None
    fsdp: bool = False
    grad_checkpointing: bool = False
    jobs: int = 1
    threads: int = 0

    def __post_init__(self) -> None:
        check_choice("device", self.device, DEVICES)
        for name in ("jobs", "threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1024:
                raise LoralabError(f"{name}={v!r} is not allowed; give an integer in 0..1024 "
                                   "(0: chosen from the free cores)")


def plan_runs(config: ExperimentConfig,
              target_sets: list[tuple[str, tuple[str, ...]]] | None = None) -> list[RunSpec]:
    """The runs in order: each method asked for, in the order of :data:`METHODS`, as its
    record's :data:`~loralab.method_specs.Plan` says: full once, LoRA and the other methods
    at every rank on every target set, rsLoRA at the larger ranks on the last target set.
    ``target_sets``: ``[(label, module names)]`` (default: :func:`parse_targets` of the
    config's targets; a transformers model's come from its workload)."""
    if target_sets is None:
        target_sets = ([parse_targets(t) for t in config.targets] if config.model is None
                       else [(t, ()) for t in config.targets])
    runs: list[RunSpec] = []
    real = config.spec.real
    for method in config.methods:
        plan = METHOD_SPECS[method].plan
        if real is not None and not METHOD_SPECS[method].default and plan == "grid":
            rank, label = real.variants_at          # a real model: variants at one place
            mods = dict(target_sets).get(label, ())
            if label in dict(target_sets) and rank in config.ranks:
                runs.append(RunSpec(method, rank, label, mods))
            else:
                runs += [RunSpec(method, config.ranks[-1], target_sets[-1][0],
                                 target_sets[-1][1])]
        elif plan == "once":
            runs.append(RunSpec(method))
        elif plan == "larger_ranks":
            label, modules = target_sets[-1]
            runs += [RunSpec(method, r, label, modules) for r in config.effective_rslora_ranks]
        else:
            runs += [RunSpec(method, r, label, mods) for label, mods in target_sets
                     for r in config.ranks]
    return runs
