"""The seed's teaching demo: ``LoraConfig``, ``simulate_lora`` and ``pseudo_code``.

What the seed computes, for a random base weight ``W0 ~ N(0, 1)`` of shape ``(d, d)`` and
each rank ``r``: random ``B: (d, r)`` and ``A: (r, d)``, the update ``ΔW = (α/r)·B A`` and
its "error" ``‖W0 − (W0 + ΔW)‖_F``.

That "error" is just ``‖ΔW‖_F``, the size of a random perturbation. For Gaussian ``A, B``
every entry of ``BA`` is a sum of ``r`` products of unit normals, so
``E‖BA‖_F² = d_out·d_in·r`` and::

    E‖ΔW‖_F² = (α/r)²·d_out·d_in·r = α²·d_out·d_in / r   ⇒   ‖ΔW‖_F ≈ α·d/√r (square case)

The falling curve is the α/r scaling, not expressive power. What rank ``r`` *can* express is
the Eckart–Young optimum ``min_{rank(X)≤r} ‖W0 − X‖_F = sqrt(Σ_{i>r} σ_i²)``, computed here
from one SVD of ``W0`` and shown beside the seed's number.

Convention: the LoRA paper's and PEFT's, ``A: (r, d_in)``, ``B: (d_out, r)``, ``ΔW = (α/r)·BA``
(the seed's section 4 writes the same product as ``AB`` with the names swapped). ``B`` is
drawn before ``A`` so that, with the same seed, the numbers equal the seed script's.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Literal

from .errors import LoralabError

__all__ = [
    "PSEUDO_CODE",
    "DemoResult",
    "LoraConfig",
    "RankRow",
    "format_table",
    "pseudo_code",
    "run_demo",
    "simulate_lora",
    "theory_delta_norm",
]

DType = Literal["float32", "float64"]
DTYPES: tuple[str, ...] = ("float32", "float64")


@dataclass
class LoraConfig:
    """The seed's configuration, with its exact names and defaults.

    Attributes:
        hidden_size: ``d``; the simulated weight is ``(d, d)``.
        rank_candidates: the ranks ``r`` to try (each ``1 ≤ r ≤ d``).
        alpha: the LoRA scale ``α``; the update is multiplied by ``α/r``.
    """

    hidden_size: int = 512
    rank_candidates: tuple[int, ...] = (2, 4, 8, 16, 32)
    alpha: float = 16.0

    def __post_init__(self) -> None:
        d = self.hidden_size
        if isinstance(d, bool) or not isinstance(d, int) or d <= 0:
            raise LoralabError(f"hidden_size={d!r} is not allowed; it must be an integer >= 1")
        ranks = tuple(self.rank_candidates)
        if not ranks:
            raise LoralabError("rank_candidates is empty; give at least one rank, e.g. (2, 4, 8)")
        for r in ranks:
            if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
                raise LoralabError(f"rank {r!r} is not allowed; ranks must be integers >= 1")
            if r > d:
                raise LoralabError(f"rank {r} is not allowed; ranks must be <= hidden_size={d}")
        self.rank_candidates = ranks
        try:
            alpha = float(self.alpha)
        except (TypeError, ValueError):
            raise LoralabError(f"alpha={self.alpha!r} is not a number") from None
        if not math.isfinite(alpha):
            raise LoralabError(f"alpha={self.alpha!r} is not allowed; it must be finite")
        self.alpha = alpha


@dataclass(frozen=True)
class RankRow:
    """One rank's numbers.

    Attributes:
        rank: ``r``.
        delta_norm: the seed's "error" ``‖W0 − (W0 + ΔW)‖_F`` (= ``‖ΔW‖_F`` up to rounding).
        theory: ``sqrt(E‖ΔW‖_F²) = α·sqrt(d_out·d_in / r)``.
        theory_std: the standard deviation of ``‖ΔW‖_F`` for Gaussian ``A, B``.
        optimal_error: ``‖W0 − W0_r‖_F = sqrt(Σ_{i>r} σ_i²)``, the best any rank-r matrix can do.
        optimal_relative: ``optimal_error / ‖W0‖_F``.
        trainable_params: ``r·(d_in + d_out)`` (``2dr`` when square).
        full_params: ``d_in·d_out`` (``d²``).
    """

    rank: int
    delta_norm: float
    theory: float
    theory_std: float
    optimal_error: float
    optimal_relative: float
    trainable_params: int
    full_params: int


@dataclass
class DemoResult:
    """Everything the demo computed; ``to_dict()`` is what ``--json`` writes."""

    config: LoraConfig
    seed: int
    dtype: str
    w0_norm: float
    singular_values: list[float]
    rows: list[RankRow] = field(default_factory=list)
    plot_path: str | None = None

    def to_dict(self) -> dict:
        """Plain JSON-able dict: ``{"config", "seed", "dtype", "w0_norm", "rows", ...}``."""
        return {
            "config": asdict(self.config),
            "seed": self.seed,
            "dtype": self.dtype,
            "w0_norm": self.w0_norm,
            "rows": [asdict(row) for row in self.rows],
            "singular_values": self.singular_values,
            "plot_path": self.plot_path,
        }


def theory_delta_norm(d_out: int, d_in: int, rank: int, alpha: float) -> tuple[float, float]:
    """Mean and standard deviation of ``‖(α/r)·BA‖_F`` for i.i.d. N(0, 1) ``B: (d_out, r)``,
    ``A: (r, d_in)``.

    With ``k = d_in``: ``E‖BA‖_F² = d_out·k·r`` and
    ``Var‖BA‖_F² = 2·d_out·r·k·(k + r + 1) + 2·d_out²·r·k`` (condition on ``A``: each row
    ``b_i A`` is a Gaussian quadratic form in ``M = AAᵀ``). The norm's mean is taken as
    ``sqrt(E‖ΔW‖²)`` and its std by the delta method, ``std(X²) / (2·sqrt(E X²))``.
    """
    d, k, r = d_out, d_in, rank
    scale2 = (alpha / r) ** 2
    mean_sq = scale2 * d * k * r
    var_sq = scale2**2 * (2 * d * r * k * (k + r + 1) + 2 * d * d * r * k)
    mean = math.sqrt(mean_sq)
    std = math.sqrt(var_sq) / (2 * mean) if mean > 0 else 0.0
    return mean, std


def run_demo(config: LoraConfig | None = None, *, seed: int = 42,
             dtype: DType = "float32") -> DemoResult:
    """Compute the seed's table and the meaningful curves beside it. No printing, no files.

    Random numbers come from a private ``torch.Generator`` seeded with ``seed`` and are drawn
    in float32 in the seed's order (``W0``, then ``B``, ``A`` per rank), so the same seed gives
    the same numbers in both dtypes and the same numbers as the seed's own script.
    """
    from .threads import SMALL_NUMEL, torch_threads

    config = config if config is not None else LoraConfig()
    if dtype not in DTYPES:
        raise LoralabError(f"dtype={dtype!r} is not allowed; choose one of {', '.join(DTYPES)}")
    d = config.hidden_size
    with torch_threads(1 if d * d <= SMALL_NUMEL else None):
        return _run_demo(config, seed, dtype)


def _run_demo(config: LoraConfig, seed: int, dtype: DType) -> DemoResult:
    import torch

    tdtype = getattr(torch, dtype)
    d = config.hidden_size
    gen = torch.Generator().manual_seed(seed)

    w0 = torch.randn(d, d, generator=gen).to(tdtype)                  # (d_out, d_in)
    sigma = torch.linalg.svdvals(w0).double()                          # (d,), descending
    # tail[r] = Σ_{i>r} σ_i² for every r at once (Eckart–Young), from the one SVD.
    energy = sigma.square()
    tail = torch.cat([energy.flip(0).cumsum(0).flip(0), energy.new_zeros(1)])
    w0_norm = float(energy.sum().sqrt())

    rows = []
    for r in config.rank_candidates:
        b = torch.randn(d, r, generator=gen).to(tdtype)                # B: (d_out, r)
        a = torch.randn(r, d, generator=gen).to(tdtype)                # A: (r, d_in)
        delta = (config.alpha / r) * (b @ a)                           # (d_out, d_in), rank ≤ r
        w = w0 + delta
        seed_error = float(torch.linalg.norm(w0 - w, ord="fro"))       # the seed's "error"
        mean, std = theory_delta_norm(d, d, r, config.alpha)
        opt = float(tail[r].clamp_min(0).sqrt())
        rows.append(RankRow(
            rank=r, delta_norm=seed_error, theory=mean, theory_std=std,
            optimal_error=opt, optimal_relative=opt / w0_norm if w0_norm else 0.0,
            trainable_params=r * (d + d), full_params=d * d,
        ))
    return DemoResult(config=config, seed=seed, dtype=dtype, w0_norm=w0_norm,
                      singular_values=sigma.tolist(), rows=rows)


def format_table(result: DemoResult) -> str:
    """The per-rank table and the note that says how to read it."""
    cfg = result.config
    d = cfg.hidden_size
    lines = [
        f"LoRA rank demo: W0 ~ N(0,1) of shape ({d}, {d}), alpha = {cfg.alpha:g}, "
        f"seed = {result.seed}, {result.dtype}; ΔW = (α/r)·B A, B: (d, r), A: (r, d)",
        "",
        f"{'rank':>5}  {'‖ΔW‖_F (seed error)':>20}  {'theory α·d/√r ± std':>22}  "
        f"{'best rank-r ‖W0−W0_r‖_F':>24}  {'trainable 2dr / d²':>26}",
    ]
    for row in result.rows:
        theory = f"{row.theory:,.1f} ± {row.theory_std:,.1f}"
        opt = f"{row.optimal_error:,.1f} ({row.optimal_relative:6.1%})"
        params = (f"{row.trainable_params:,} / {row.full_params:,} "
                  f"({row.trainable_params / row.full_params:.2%})")
        lines.append(f"{row.rank:>5}  {row.delta_norm:>20,.2f}  {theory:>22}  {opt:>24}  "
                     f"{params:>26}")
    last = result.rows[-1]
    lines += [
        "",
        "How to read this table:",
        "  * The seed's 'error' ‖W0 − (W0 + ΔW)‖_F is just ‖ΔW‖_F, the size of a random update.",
        "    It falls with r only because ΔW is scaled by α/r while ‖BA‖_F grows like √r:",
        "    E‖ΔW‖_F² = α²·d²/r, so it follows the theory column. It does not measure what",
        "    rank r can express.",
        "  * What rank r can express is the Eckart–Young optimum sqrt(Σ_{i>r} σ_i²), the best",
        f"    column. For this Gaussian W0 even r = {last.rank} leaves {last.optimal_relative:.1%} "
        f"of ‖W0‖_F = {result.w0_norm:,.1f}:",
        "    a random matrix is not low-rank. LoRA bets that the *update* a task needs is",
        "    low-rank; see `loralab svd`, `loralab fit` and `loralab finetune`.",
    ]
    return "\n".join(lines)


def plot_path_default() -> str:
    """The seed's output file, in the current directory."""
    return os.path.join(os.getcwd(), "lora_rank_error.png")


def simulate_lora(config: LoraConfig | None = None, *, seed: int = 42, dtype: DType = "float32",
                  plot_path: str | os.PathLike[str] | None = "lora_rank_error.png",
                  verbose: bool = True) -> DemoResult:
    """The seed's function: print the per-rank table and save ``lora_rank_error.png``.

    Returns the :class:`DemoResult` as well. ``plot_path=None`` skips the figure and
    ``verbose=False`` the printing (the pure computation is :func:`run_demo`).
    """
    from .fileio import check_output_file

    if plot_path is not None:
        check_output_file(plot_path)
    result = run_demo(config, seed=seed, dtype=dtype)
    if verbose:
        print(format_table(result))
    if plot_path is not None:
        from .plots.demo import plot_demo

        result.plot_path = plot_demo(result, plot_path)
        if verbose:
            print(f"\nsaved {result.plot_path}")
    return result


PSEUDO_CODE = '''\
import math
import torch
from torch import nn


class LoRALinear(nn.Module):
    """y = x W0ᵀ + (α/r)·(x Aᵀ) Bᵀ, with W0 frozen; A: (r, in_features), B: (out_features, r)."""

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)          # freeze W0 (and its bias)
        if self.base.bias is not None:
            self.base.bias.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features))   # A: (r, in)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r))  # B: (out, r) = 0
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))          # so BA = 0 at start
        self.scaling = alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = x @ self.base.weight.T                                  # (..., in) -> (..., out)
        if self.base.bias is not None:
            base = base + self.base.bias
        lora_update = (x @ self.lora_a.T) @ self.lora_b.T * self.scaling  # (..., r) -> (..., out)
        return base + lora_update


# Inject into the attention projections of a Transformer and train only A and B:
#   targets = {"q_proj", "k_proj", "v_proj", "o_proj"}
#   for module in list(model.modules()):
#       for child_name, child in module.named_children():
#           if child_name in targets and isinstance(child, nn.Linear):
#               setattr(module, child_name, LoRALinear(child, r=8, alpha=16))
#   for p in model.parameters():                       # train A and B only
#       p.requires_grad_(False)
#   for m in model.modules():
#       if isinstance(m, LoRALinear):
#           m.lora_a.requires_grad_(True); m.lora_b.requires_grad_(True)
#
# What production code adds (all in loralab.lora):
#   * dropout on the LoRA path:        (dropout(x) @ Aᵀ) @ Bᵀ · α/r
#   * merge / unmerge for inference:   W = W0 + (α/r)·B A, and back, exactly
#   * selective injection by module name (q/k/v/o, MLP up/down), everything else frozen
#   * adapters saved in PEFT's format: adapter_config.json + adapter_model.safetensors
'''


def pseudo_code() -> None:
    """Print the seed's pseudo code: LoRA injected into ``nn.Linear`` (it also runs as is)."""
    print(PSEUDO_CODE, end="")
