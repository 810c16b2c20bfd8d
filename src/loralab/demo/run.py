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
drawn before ``A`` (:func:`loralab.lowrank.seed.draw_seed_delta`) so that, with the same seed,
the numbers equal the seed script's.
"""

from __future__ import annotations

import os

from ..errors import check_choice
from ..fileio import require_finite
from ..lowrank.matrices import gaussian_matrix, tail_energy
from ..lowrank.seed import draw_seed_delta
from ..lowrank.theory import theory_delta_norm
from ..threads import small_matrix_threads, torch_threads
from .result import DTYPES, DemoResult, DType, LoraConfig, RankRow

__all__ = ["format_table", "plot_path_default", "run_demo", "simulate_lora"]


def run_demo(config: LoraConfig | None = None, *, seed: int = 42,
             dtype: DType = "float32") -> DemoResult:
    """Compute the seed's table and the meaningful curves beside it. No printing, no files.

    Random numbers come from a private ``torch.Generator`` seeded with ``seed`` and are drawn
    in float32 in the seed's order (``W0``, then ``B``, ``A`` per rank), so the same seed gives
    the same numbers in both dtypes and the same numbers as the seed's own script.
    """
    config = config if config is not None else LoraConfig()
    check_choice("dtype=", dtype, DTYPES)
    d = config.hidden_size
    with torch_threads(small_matrix_threads(d * d)):
        return _run_demo(config, seed, dtype)


def _run_demo(config: LoraConfig, seed: int, dtype: DType) -> DemoResult:
    import torch

    tdtype = getattr(torch, dtype)
    d = config.hidden_size
    gen = torch.Generator().manual_seed(seed)

    w0 = gaussian_matrix(d, d, seed=gen, dtype=tdtype)                 # (d_out, d_in)
    sigma = torch.linalg.svdvals(w0).double()                          # (d,), descending
    # tail[r] = Σ_{i>r} σ_i² for every r at once (Eckart–Young), from the one SVD.
    tail = tail_energy(sigma)                                          # (d + 1,)
    w0_norm = float(sigma.square().sum().sqrt())

    rows = []
    for r in config.rank_candidates:
        # B: (d_out, r) then A: (r, d_in) from the same stream, cast to the dtype
        draw = draw_seed_delta((d, d), r, alpha=config.alpha, generator=gen)
        delta = draw.delta(tdtype)                                     # (d_out, d_in), rank ≤ r
        w = w0 + delta
        seed_error = float(torch.linalg.norm(w0 - w, ord="fro"))       # the seed's "error"
        mean, std = theory_delta_norm(d, d, r, config.alpha)
        opt = float(tail[r].clamp_min(0).sqrt())
        rows.append(RankRow(
            rank=r, delta_norm=seed_error, theory=mean, theory_std=std,
            optimal_error=opt, optimal_relative=opt / w0_norm if w0_norm else 0.0,
            trainable_params=r * (d + d), full_params=d * d,
        ))
    result = DemoResult(config=config, seed=seed, dtype=dtype, w0_norm=w0_norm,
                        singular_values=sigma.tolist(), rows=rows)
    require_finite(result.to_dict(), "the demo's", "use a smaller alpha (--alpha) or dtype "
                   "float64 (--dtype float64)")
    return result


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
    from ..fileio import check_output_file

    if plot_path is not None:
        from ..plots import check_figure_path

        check_figure_path(plot_path, flag="plot_path")
        check_output_file(plot_path)
    result = run_demo(config, seed=seed, dtype=dtype)
    if verbose:
        print(format_table(result))
    if plot_path is not None:
        from ..plots.demo import plot_demo

        result.plot_path = plot_demo(result, plot_path)
        if verbose:
            print(f"\nsaved {result.plot_path}")
    return result
