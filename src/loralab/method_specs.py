"""The fine-tuning methods, one typed record each: the one place that knows what a method is.

Every module that treats methods differently asks the record (:data:`METHOD_SPECS`) instead of
comparing names: the experiment builds a run's model from ``init``, ``scale``, ``dora``,
``base_bits`` and ``lr_ratio``, plans its runs by ``plan``, checks ``needs`` and ``fsdp``;
the memory estimate names it and picks its cost model; the figures take its ``color``.
Adding a method is one record here plus the code of what is genuinely new.

A run of an adapter method trains, on each targeted weight ``W0`` ``(d_out, d_in)``::

    W = W0 + s · B A,     A: (r, d_in),  B: (d_out, r),  s = α/r  (rsLoRA: α/√r)

``full`` trains ``W`` itself. Imports nothing above :mod:`loralab.errors` (``--help`` lists
the names without loading torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, get_args

from .errors import LoralabError, check_choice

__all__ = ["LOFTQ_ITER", "LORAPLUS_RATIO", "METHOD_SPECS", "Init", "Method", "MethodSpec",
           "Plan", "Requirement", "Scale", "full_run", "method_spec", "runs_of"]

Method = Literal["full", "lora", "rslora", "dora", "loraplus", "pissa", "olora", "qlora",
                 "loftq"]
Init = Literal["plain", "pissa", "olora", "loftq"]
"""How the adapter starts: ``plain`` (A random, B = 0), ``pissa`` (W0's top-r singular part),
``olora`` (a QR of W0), ``loftq`` (fitted to W0 − Q(W0) of an NF4 base)."""
Scale = Literal["alpha/r", "alpha/sqrt(r)"]
"""The scale ``s`` of ``B A``: LoRA's ``α/r`` or rsLoRA's ``α/√r``."""
Plan = Literal["once", "grid", "larger_ranks"]
"""Which runs the experiment plans: ``once`` (one run, no rank), ``grid`` (every rank on every
target set), ``larger_ranks`` (the α/√r comparison: the larger ranks on the last target set)."""
Requirement = Literal["bitsandbytes"]

LOFTQ_ITER = 5             # LoftQ's alternating rounds (PEFT's loftq_iter)
LORAPLUS_RATIO = 16.0      # LoRA+: η_B / η_A, the paper's and PEFT's default


@dataclass(frozen=True)
class MethodSpec:
    """One fine-tuning method.

    Attributes:
        name: its name in ``--methods``, run labels and ``results.json``.
        help: one line for ``--help``.
        color: its colour in the figures.
        is_adapter: trains an adapter on a frozen base (``False``: every weight trains).
        init: how the adapter starts (:data:`Init`).
        scale: the scale rule of ``B A`` (:data:`Scale`).
        dora: DoRA's decomposition ``m · (W0 + s·B A)/‖W0 + s·B A‖_c``, a trained magnitude.
        base_bits: the base's linear layers quantized to that many bits (NF4) before training;
            ``None``: a float base.
        lr_ratio: ``η_B / η_A`` (LoRA+); 1: one learning rate.
        plan: which runs the experiment plans (:data:`Plan`).
        default: in the default experiment, the rank sweep (full fine-tuning, LoRA at α/r and
            α/√r); the others are compared in ``methods.png``.
        fsdp: allowed under ``--fsdp``.
        needs: optional packages it cannot run without.
        paper_sign: the sign of corr(ΔM, ΔD) in the DoRA paper's Figure 2 (Liu et al. 2024);
            a method with one is traced for DoRA's magnitude/direction view.
        step_cost: its step time over LoRA's at the same rank (handing out the longest runs
            first; DoRA forms B A and a norm per step).
        title: its name in the memory estimate (default: ``name``).
    """

    name: Method
    help: str
    color: str
    is_adapter: bool = True
    init: Init = "plain"
    scale: Scale = "alpha/r"
    dora: bool = False
    base_bits: int | None = None
    lr_ratio: float = 1.0
    plan: Plan = "grid"
    default: bool = False
    fsdp: bool = False
    needs: tuple[Requirement, ...] = ()
    paper_sign: Literal[-1, 1] | None = None
    step_cost: float = 1.0
    title: str = ""

    def __post_init__(self) -> None:
        check_choice("method", self.name, get_args(Method))    # the Literal names it too
        check_choice("init", self.init, get_args(Init))
        check_choice("scale", self.scale, get_args(Scale))
        check_choice("plan", self.plan, get_args(Plan))
        for need in self.needs:
            check_choice("needs", need, get_args(Requirement))
        adapter_only = (self.init != "plain", self.scale != "alpha/r", self.dora,
                        self.base_bits is not None, self.lr_ratio != 1.0)
        if not self.is_adapter and (any(adapter_only) or self.plan != "once"):
            raise LoralabError(f"method {self.name!r}: a method without an adapter has no "
                               "init, scale, DoRA, quantized base or LoRA+ ratio, and runs once")
        if self.is_adapter and self.plan == "once":
            raise LoralabError(f"method {self.name!r}: an adapter method runs at ranks")
        if self.init == "loftq" and self.base_bits is None:
            raise LoralabError(f"method {self.name!r}: LoftQ's init needs a quantized base")
        if not self.lr_ratio > 0 or not self.step_cost > 0:
            raise LoralabError(f"method {self.name!r}: lr_ratio and step_cost must be > 0")

    @property
    def quantizes(self) -> bool:
        """The base's linear layers are quantized (QLoRA, LoftQ)."""
        return self.base_bits is not None

    @property
    def quantize_first(self) -> bool:
        """Quantize the base before the adapter goes in (QLoRA); LoftQ's init reads the float
        base and quantizes it after."""
        return self.quantizes and self.init != "loftq"

    @property
    def residual_base(self) -> bool:
        """The init moves ``s·B0 A0`` out of the base (``W_res = W0 − s·B0 A0``: PiSSA,
        OLoRA), so the saved adapter is converted to a plain LoRA on ``W0``."""
        return self.init in ("pissa", "olora")

    @property
    def rslora(self) -> bool:
        """Scales by ``α/√r`` (PEFT's ``use_rslora``)."""
        return self.scale == "alpha/sqrt(r)"

    @property
    def sweep(self) -> bool:
        """An adapter of the default rank sweep (LoRA at α/r and α/√r): merge-checked, drawn
        in the convergence and cost figures."""
        return self.is_adapter and self.default

    @property
    def paper_slope(self) -> str | None:
        """``"negative"`` or ``"positive"``: :attr:`paper_sign` in words (``None``: none)."""
        return {-1: "negative", 1: "positive", None: None}[self.paper_sign]

    @property
    def estimate_as(self) -> Method:
        """The method whose memory estimate stands for this one in the plan: ``full``,
        ``lora`` (a float base) or ``qlora`` (a quantized base)."""
        return "full" if not self.is_adapter else "qlora" if self.quantizes else "lora"

    def run_label(self, rank: int | None = None, targets: str = "all") -> str:
        """The one spelling of a run's name: ``full``, ``lora-r8-attn``,
        ``rslora-r16-attn+mlp``."""
        return f"{self.name}-r{rank}-{targets}" if self.is_adapter else self.name

    def estimate_label(self, rank: int = 0) -> str:
        """The memory estimate's name: ``full fine-tuning``, ``LoRA r=8``, ``qlora r=8``."""
        name = self.title or self.name
        return f"{name} r={rank}" if rank and self.is_adapter else name


_BNB: tuple[Requirement, ...] = ("bitsandbytes",)

METHOD_SPECS: dict[str, MethodSpec] = {s.name: s for s in (
    MethodSpec("full", "full fine-tuning: every weight trains", "#e7298a", is_adapter=False,
               plan="once", default=True, fsdp=True, paper_sign=-1, title="full fine-tuning"),
    MethodSpec("lora", "LoRA, W0 + (α/r)·B A on the targets, B = 0 at the start", "#1f78b4",
               default=True, fsdp=True, paper_sign=1, title="LoRA"),
    MethodSpec("rslora",
               "rsLoRA: scale α/√r instead of α/r (at the larger ranks, last target set)",
               "#6a3d9a", scale="alpha/sqrt(r)", plan="larger_ranks", default=True, fsdp=True),
    MethodSpec("dora",
               "DoRA: m · (W0 + s·B A)/‖W0 + s·B A‖_c, a trained magnitude per output row",
               "#ff7f00", dora=True, paper_sign=-1, step_cost=1.5),
    MethodSpec("loraplus", "LoRA+: B learns at 16× A's learning rate", "#33a02c",
               lr_ratio=LORAPLUS_RATIO),
    MethodSpec("pissa", "PiSSA: A, B start as W0's top-r singular part, the base keeps the rest",
               "#b15928", init="pissa"),
    MethodSpec("olora", "OLoRA: A, B start from a QR of W0, the base keeps the rest",
               "#a6761d", init="olora"),
    MethodSpec("qlora", "QLoRA: the base's linear layers in 4-bit NF4, LoRA in fp32 on top",
               "#17becf", base_bits=4, needs=_BNB),
    MethodSpec("loftq", "LoftQ: an NF4 base and an adapter initialised to win back its error",
               "#7f7f7f", init="loftq", base_bits=4, needs=_BNB),
)}
"""Every method by name, in the order runs are planned and listed (``--methods``' order)."""


def method_spec(name: str) -> MethodSpec:
    """The record of method ``name``; a :class:`~loralab.errors.LoralabError` naming the
    methods when there is none."""
    check_choice("method", name, METHOD_SPECS)
    return METHOD_SPECS[name]


class _HasMethod(Protocol):
    @property
    def method(self) -> str: ...


R = TypeVar("R", bound=_HasMethod)


def full_run(runs: Iterable[R]) -> R | None:
    """The first of ``runs`` (anything with a ``method``) that trains every weight, or
    ``None``."""
    return next((r for r in runs if not method_spec(r.method).is_adapter), None)


def runs_of(runs: Iterable[R], method: Method) -> list[R]:
    """Those of ``runs`` (anything with a ``method``) of ``method``, in order."""
    method_spec(method)
    return [r for r in runs if r.method == method]
