"""``add_weighted_adapter``: a new adapter from weighted old ones, PEFT's eleven definitions.

Adapter ``i`` has weight ``w_i`` (may be negative: subtracts it), scale ``s_i`` and factors
``A_i: (r_i, d_in)``, ``B_i: (d_out, r_i)``; ``ΔW_i = s_i B_i A_i``. Let ``c_i = w_i s_i``::

    cat     A = [c_1 A_1; c_2 A_2; …], B = [B_1, B_2, …]        r = Σ r_i; B A = Σ w_i ΔW_i
    linear  A = Σ sign(c_i)√|c_i| A_i, B = Σ √|c_i| B_i          one r; B A ≠ Σ w_i ΔW_i
    ties, dare_linear, dare_ties, magnitude_prune
            the same split weights, but A and B each mixed by that rule
            (:mod:`loralab.lora.combine`): the factors are pruned, not ΔW
    svd     ΔW = Σ w_i ΔW_i, then B A = its best rank-r approximation
            (r = ``svd_rank`` or max r_i; U Σ → B, Vᴴ → A)
    ties_svd, dare_linear_svd, dare_ties_svd, magnitude_prune_svd
            ΔW = that rule on the ΔW_i (pruning ΔW itself), then the rank-r SVD

Only ``cat`` is exact; ``linear`` mixes cross terms ``√(c_i c_j) B_i A_j`` into the sum,
the SVD forms drop what lies past rank r, the pruning forms drop entries on purpose.
``svd_clamp`` (a quantile q) clips ``U Σ`` and ``Vᴴ`` to ``±quantile(their entries, q)``.
DARE's random masks are drawn from ``generator`` (``None``: torch's global generator, as
PEFT), layer by layer in model order, each layer's ``A`` tensors before its ``B`` tensors
(SVD forms: its ``ΔW_i``, in the base's storage layout, ``(d_in, d_out)`` for ``Conv1D``
and ``nn.Embedding``, as PEFT). The new adapter has ``lora_alpha = r`` (scale 1), is frozen and
is not made active.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from ..errors import LoralabError
from .combine import PRUNING, SIGN_METHODS, SignMethod, check_density, mix_tensors
from .config import AdapterConfig
from .inject import inject_lora, mark_only_lora_trainable, set_module, sync_active
from .layer import LoRALayer
from .state import adapters_of, lora_layers

__all__ = ["COMBINATIONS", "SVD_DRIVERS", "Combination", "add_weighted_adapter"]

Combination = Literal["svd", "linear", "cat", "ties", "ties_svd", "dare_ties", "dare_linear",
                      "dare_ties_svd", "dare_linear_svd", "magnitude_prune",
                      "magnitude_prune_svd"]
COMBINATIONS: tuple[str, ...] = ("linear", "cat", "svd", "ties", "ties_svd", "dare_linear",
                                 "dare_ties", "dare_linear_svd", "dare_ties_svd",
                                 "magnitude_prune", "magnitude_prune_svd")
SVD_DRIVERS: tuple[str | None, ...] = (None, "gesvd", "gesvdj", "gesvda")


def _mix_of(combination: str) -> str:
    """The tensor rule of a combination (``"svd"`` → ``"linear"``, ``"ties_svd"`` → ``"ties"``)."""
    if combination == "svd":
        return "linear"
    return combination.removesuffix("_svd")


def _new_config(model: nn.Module, adapters: list[str], combination: str,
                svd_rank: int | None) -> tuple[AdapterConfig, int]:
    configs = [adapters_of(model).configs[a] for a in adapters]
    if any(c.target_parameters for c in configs):
        raise LoralabError("add_weighted_adapter does not combine adapters with "
                           "target_parameters (as PEFT)")
    if any(c.use_dora for c in configs):
        raise LoralabError("add_weighted_adapter does not combine DoRA adapters")
    ranks = [max(c.r, *c.rank_pattern.values()) if c.rank_pattern else c.r for c in configs]
    if not combination.endswith("svd") and combination != "cat" and len(set(ranks)) != 1:
        raise LoralabError(f"combination_type={combination!r} needs adapters of one rank, got "
                           f"ranks {ranks}; use 'cat' or an '_svd' combination (as PEFT "
                           "requires)")
    rank = sum(ranks) if combination == "cat" else ranks[0] if not combination.endswith("svd") \
        else (svd_rank or max(ranks))
    kinds = {isinstance(c.target_modules, str) for c in configs}
    if len(kinds) > 1:
        raise LoralabError("adapters mixing a regex and a list for target_modules cannot be "
                           "combined (as in PEFT)")
    if kinds == {True}:
        targets: list[str] | str = "|".join(f"({c.target_modules})" for c in configs)
    else:
        targets = sorted(set().union(*(c.target_modules for c in configs)))  # type: ignore[arg-type]
    return replace(configs[0], r=rank, lora_alpha=rank, target_modules=targets,
                   init_lora_weights=True, rank_pattern={}, alpha_pattern={},
                   modules_to_save=None, task_type=None), rank


def _svd_factors(layer: LoRALayer, delta: torch.Tensor, rank: int, clamp: float | None,
                 full_matrices: bool, driver: str | None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` of rank ``rank`` from ``ΔW`` (a kernel is flattened to ``(C_out, C_in·k…)``)."""
    conv = delta.ndim > 2
    flat = delta.flatten(1) if conv else delta                    # (d_out, d_in)
    u, s, vh = torch.linalg.svd(flat, full_matrices=full_matrices, driver=driver)
    b, a = u[:, :rank] @ torch.diag(s[:rank]), vh[:rank]           # (d_out, r), (r, d_in)
    if clamp is not None:
        hi = torch.quantile(torch.cat([b.flatten(), a.flatten()]), clamp)
        b, a = b.clamp(-hi, hi), a.clamp(-hi, hi)
    if conv:
        shape_a, shape_b = (t.shape for t in layer.factors(layer.adapter_names[0]))
        a = a.reshape(a.shape[0], *shape_a[1:])
        b = b.reshape(shape_b[0], b.shape[1], *shape_b[2:])
    return a, b


@dataclass(frozen=True)
class _Options:
    """The arguments every layer's combination reads (checked once)."""

    density: float | None
    sign: SignMethod
    generator: torch.Generator | None
    clamp: float | None
    full: bool
    driver: str | None


def _combined(layer: LoRALayer, adapters: list[str], weights: list[float], combination: str,
              rank: int, options: _Options) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The new ``(A, B)`` of one layer (``None`` if it has none of the adapters)."""
    have = [(a, w) for a, w in zip(adapters, weights, strict=True) if a in layer.r]
    if not have:
        return None
    mix = _mix_of(combination)
    kw = {"density": options.density, "majority_sign_method": options.sign,
          "generator": options.generator}
    if combination.endswith("svd"):
        # in the base's storage layout (Conv1D, Embedding: (d_in, d_out)), as PEFT draws
        # DARE's masks there; back to (d_out, d_in) for the SVD
        flip = layer.transposed
        deltas = [layer.delta_weight(a).T if flip else layer.delta_weight(a) for a, _ in have]
        ws = torch.tensor([w for _, w in have]).to(deltas[0].device)
        delta = mix_tensors(mix, deltas, ws, **kw)                   # type: ignore[arg-type]
        delta = delta.T if flip else delta
        return _svd_factors(layer, delta, rank, options.clamp, options.full, options.driver)
    if combination == "cat":
        a = torch.cat([layer.factors(n)[0] * w * layer.scaling[n] for n, w in have], dim=0)
        b = torch.cat([layer.factors(n)[1] for n, w in have], dim=1)
        return a, b
    scaled = [w * layer.scaling[n] for n, w in have]
    wa = torch.tensor([math.copysign(math.sqrt(abs(c)), c) for c in scaled])
    wb = torch.tensor([math.sqrt(abs(c)) for c in scaled])
    a_s, b_s = zip(*(layer.factors(n) for n, _ in have), strict=True)
    return (mix_tensors(mix, list(a_s), wa.to(a_s[0].device), **kw),  # type: ignore[arg-type]
            mix_tensors(mix, list(b_s), wb.to(b_s[0].device), **kw))  # type: ignore[arg-type]


def _check_options(combination: object, density: object, majority_sign_method: object,
                   svd_clamp: object, svd_driver: object, svd_rank: object) -> float | None:
    if combination not in COMBINATIONS:
        raise LoralabError(f"combination_type={combination!r} is not allowed; use one of "
                           f"{', '.join(COMBINATIONS)}")
    if majority_sign_method not in SIGN_METHODS:
        raise LoralabError(f"majority_sign_method={majority_sign_method!r} is not allowed; "
                           f"use one of {', '.join(SIGN_METHODS)}")
    if svd_driver not in SVD_DRIVERS:
        raise LoralabError(f"svd_driver={svd_driver!r} is not allowed; use None, 'gesvd', "
                           "'gesvdj' or 'gesvda' (CUDA only)")
    if svd_clamp is not None and (isinstance(svd_clamp, bool)
                                  or not isinstance(svd_clamp, int | float)
                                  or not 0 <= svd_clamp <= 1):
        raise LoralabError(f"svd_clamp={svd_clamp!r} is not allowed; give a quantile in "
                           "[0, 1] or None")
    if svd_rank is not None and (isinstance(svd_rank, bool) or not isinstance(svd_rank, int)
                                 or svd_rank < 1):
        raise LoralabError(f"svd_rank={svd_rank!r} is not allowed; give an integer >= 1 or "
                           "None")
    if _mix_of(str(combination)) in PRUNING:
        return check_density(density, str(combination))
    if density is not None:
        raise LoralabError(f"density={density!r} is not allowed with combination "
                           f"{combination!r}; only the TIES, DARE and magnitude_prune "
                           "combinations prune")
    return None


@torch.no_grad()
def add_weighted_adapter(model: nn.Module, adapters: list[str], weights: list[float],
                         adapter_name: str, combination_type: Combination = "svd",
                         svd_rank: int | None = None, svd_clamp: float | None = None,
                         svd_full_matrices: bool = True, svd_driver: str | None = None,
                         density: float | None = None,
                         majority_sign_method: SignMethod = "total",
                         generator: torch.Generator | None = None) -> None:
    """A new adapter ``adapter_name`` from ``adapters`` weighted by ``weights`` (PEFT's
    ``add_weighted_adapter``, same arguments; definitions in the module doc). ``density``
    (0 < density ≤ 1, the share of entries kept) is required by the TIES, DARE and
    magnitude-prune combinations and refused by the others; ``generator`` draws DARE's
    masks. With one adapter every combination is ``"linear"`` (as PEFT). Every argument is
    checked before the model changes."""
    state = adapters_of(model)
    adapters = state.check(adapters)
    if len(weights) != len(adapters) or not all(math.isfinite(float(w)) for w in weights):
        raise LoralabError(f"weights={weights!r} is not allowed; give one finite weight per "
                           f"adapter ({len(adapters)})")
    density = _check_options(combination_type, density, majority_sign_method, svd_clamp,
                             svd_driver, svd_rank)
    if adapter_name in state.configs:
        raise LoralabError(f"the model already has an adapter named {adapter_name!r}")
    if svd_driver is not None and any(p.device.type != "cuda" for p in model.parameters()):
        raise LoralabError(f"svd_driver={svd_driver!r} is only allowed on CUDA (a cuSOLVER "
                           "method); leave it None on a CPU model")
    _check_layers(model, adapters)
    combination = "linear" if len(adapters) == 1 else combination_type
    if combination == "linear":
        density = None
    config, rank = _new_config(model, adapters, combination, svd_rank)
    options = _Options(density, majority_sign_method, generator, svd_clamp,
                       bool(svd_full_matrices), svd_driver)
    active = list(state.active)
    inject_lora(model, config, adapter_name=adapter_name)
    try:
        _fill(model, adapter_name, adapters, [float(w) for w in weights], combination, rank,
              options)
    except Exception:
        _remove(model, adapter_name)
        raise
    state.active = active
    sync_active(model)
    mark_only_lora_trainable(model, bias=state.configs[active[0]].bias)


def _check_layers(model: nn.Module, adapters: list[str]) -> None:
    """Refuse a grouped convolution among the adapters' layers (its B holds r/groups
    channels, which no combination's (A, B) fits)."""
    for path, m in lora_layers(model).items():
        groups = getattr(m.base, "groups", 1)
        if groups > 1 and any(a in m.r for a in adapters):
            raise LoralabError(f"add_weighted_adapter does not combine adapters on the grouped "
                               f"convolution {path!r} (groups={groups})")


def _fill(model: nn.Module, adapter_name: str, adapters: list[str], weights: list[float],
          combination: str, rank: int, options: _Options) -> None:
    for layer in lora_layers(model).values():
        if adapter_name not in layer.r:
            continue
        a_new, b_new = layer.factors(adapter_name)
        a_new.zero_()
        b_new.zero_()
        got = _combined(layer, adapters, weights, combination, rank, options)
        if got is not None:
            a, b = got
            a_new[: a.shape[0]].copy_(a)
            b_new[:, : b.shape[1]].copy_(b)


def _remove(model: nn.Module, adapter_name: str) -> None:
    """Take a half-built adapter out again (a failed SVD driver, say)."""
    for path, layer in lora_layers(model).items():
        if adapter_name in layer.r:
            layer.delete_adapter(adapter_name)
            if not layer.r:
                set_module(model, path, layer.base)
    adapters_of(model).configs.pop(adapter_name, None)
