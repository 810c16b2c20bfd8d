"""What rank r can capture of a matrix, from one SVD (the seed's section 8).

For ``W: (m, n)`` with singular values ``σ_1 ≥ … ≥ σ_k`` (``k = min(m, n)``), the best
rank-r approximation is the truncated SVD ``W_r = U_r diag(σ_1..σ_r) V_rᵀ`` and
(Eckart–Young–Mirsky)::

    min_{rank X ≤ r} ‖W − X‖_F = ‖W − W_r‖_F = sqrt(Σ_{i>r} σ_i²)
    min_{rank X ≤ r} ‖W − X‖_2 = ‖W − W_r‖_2 = σ_{r+1}          (σ_{k+1} := 0)

so one ``svdvals`` gives the error of every rank at once: a reversed cumulative sum of
``σ_i²`` (:func:`svd_sweep`). :func:`eckart_young_check` forms ``W − W_r`` explicitly and
measures it, :func:`randomized_sweep` gets the top values from ``torch.svd_lowrank`` when
``r ≪ k``, :func:`random_ba_errors` is the seed's random ``ΔW = (α/r)·BA`` beside them, and
:func:`spectrum` gives the cumulative energy and the ranks that hold 50/90/99 % of it.

Modules, one concept each: :mod:`.matrices` (input checks, matrices with a known spectrum
such as :func:`low_rank_plus_noise`), :mod:`.seed` (the seed's ``(α/r)·B A``, drawn in one
place: :func:`draw_seed_delta`), :mod:`.sweep` (the sweep, the randomized path, the explicit
check), :mod:`.analysis` (the seed's random baseline, the spectrum and :func:`analyze_svd`),
:mod:`.heatmap` (``ΔW`` and its rank-r residuals: :func:`analyze_heatmap`), :mod:`.fit`
(learned fits, subspace similarity), :mod:`.quant_error` (quantization error and LoftQ),
:mod:`.tables` (the commands' text tables), :mod:`.theory` (the Gaussian theory),
:mod:`.budget` (memory checks) and :mod:`.matrixio` (a matrix from a ``.npy`` /
``.safetensors`` file).

Convention: the LoRA paper's, ``A: (r, d_in)``, ``B: (d_out, r)``, ``ΔW = (α/r)·B A``,
``W: (d_out, d_in) = (m, n)``. Nothing here mutates its inputs or prints.
"""

from __future__ import annotations

from .analysis import (
    ENERGY_FRACTIONS,
    RandomRow,
    Spectrum,
    SpectrumComparison,
    SvdAnalysis,
    analyze_svd,
    compare_spectra,
    energy_ranks,
    random_ba_errors,
    spectrum,
)
from .fit import (
    FitResult,
    RankFit,
    SubspaceSimilarity,
    compare_subspaces,
    fit_lowrank,
    fit_rank,
    phi,
    random_similarity,
    subspace_similarity,
)
from .heatmap import DELTA_KINDS, DeltaKind, HeatmapAnalysis, analyze_heatmap, generated_delta
from .matrices import (
    KINDS,
    Kind,
    as_matrix,
    check_ranks,
    decaying_spectrum,
    gaussian_matrix,
    low_rank_plus_noise,
    make_matrix,
    matrix_with_spectrum,
    tail_energy,
)
from .seed import SeedDelta, draw_seed_delta
from .sweep import (
    EckartYoungCheck,
    EckartYoungRow,
    SvdSweep,
    SweepComparison,
    compare_sweeps,
    eckart_young_check,
    randomized_sweep,
    svd_factors,
    svd_sweep,
    sweep_from_singular_values,
    truncate,
)
from .tables import format_fit, format_heatmap, format_quant, format_spectrum, format_svd

__all__ = [
    "DELTA_KINDS",
    "DeltaKind",
    "ENERGY_FRACTIONS",
    "EckartYoungCheck",
    "EckartYoungRow",
    "FitResult",
    "HeatmapAnalysis",
    "KINDS",
    "Kind",
    "RandomRow",
    "RankFit",
    "SeedDelta",
    "Spectrum",
    "SpectrumComparison",
    "SubspaceSimilarity",
    "SvdAnalysis",
    "SvdSweep",
    "SweepComparison",
    "analyze_heatmap",
    "analyze_svd",
    "as_matrix",
    "check_ranks",
    "compare_spectra",
    "compare_subspaces",
    "compare_sweeps",
    "decaying_spectrum",
    "draw_seed_delta",
    "eckart_young_check",
    "energy_ranks",
    "fit_lowrank",
    "format_fit",
    "format_heatmap",
    "format_quant",
    "format_spectrum",
    "format_svd",
    "fit_rank",
    "gaussian_matrix",
    "generated_delta",
    "low_rank_plus_noise",
    "make_matrix",
    "matrix_with_spectrum",
    "phi",
    "random_ba_errors",
    "random_similarity",
    "randomized_sweep",
    "spectrum",
    "subspace_similarity",
    "svd_factors",
    "svd_sweep",
    "sweep_from_singular_values",
    "tail_energy",
    "truncate",
]
