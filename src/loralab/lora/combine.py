"""How ``add_weighted_adapter`` mixes tensors: task arithmetic, TIES, DARE, magnitude pruning.

PEFT's ``peft.utils.merge_utils``, op for op (so the results agree to the bit on one
machine). ``n`` task tensors ``T_i`` of one shape, weights ``w_i`` (a ``(n,)`` tensor)::

    linear           Σ w_i T_i                                   (task arithmetic)
    magnitude_prune  Σ w_i P_k(T_i)       P_k: keep the k = ⌊density·numel⌋ largest |entries|
    dare_linear      Σ w_i M_i⊙T_i/density       M_i ~ Bernoulli(density), drawn per tensor
    ties             Σ_i w_i P_k(T_i)⊙E_i / max(1, Σ_i E_i)      E_i: entries whose sign is
                     the elected one, sign(Σ_i P_k(T_i)) ("total") or the sign most tensors
                     have ("frequency"); elected on the *unweighted* tensors, as PEFT does
    dare_ties        ties with P_k replaced by the DARE mask M_i⊙T_i/density

``density = 1`` prunes nothing (and draws nothing). DARE's masks come from ``generator``
(``None``: torch's global generator, as PEFT), one Bernoulli draw per tensor in order.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import LoralabError

__all__ = ["PRUNING", "SIGN_METHODS", "TENSOR_MIXES", "SignMethod", "TensorMix",
           "check_density", "mix_tensors", "prune_magnitude", "prune_random"]

TensorMix = Literal["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"]
TENSOR_MIXES: tuple[str, ...] = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")
PRUNING: tuple[str, ...] = TENSOR_MIXES[1:]          # the mixes that need a density
SignMethod = Literal["total", "frequency"]
SIGN_METHODS: tuple[str, ...] = ("total", "frequency")


def check_density(density: object, combination: str) -> float:
    """``density`` of a pruning ``combination``: a number in (0, 1], the share of entries kept."""
    if isinstance(density, bool) or not isinstance(density, int | float) \
            or not 0 < density <= 1:
        raise LoralabError(f"density={density!r} is not allowed with combination "
                           f"{combination!r}; give the share of entries kept, 0 < density <= 1")
    return float(density)


def prune_magnitude(t: torch.Tensor, density: float) -> torch.Tensor:
    """``t`` with all but its ``⌊density·numel⌋`` largest-magnitude entries set to 0."""
    if density >= 1:
        return t
    mask = torch.zeros_like(t).reshape(-1)
    top = torch.topk(t.abs().reshape(-1), k=int(density * t.numel()), largest=True)
    mask[top[1]] = 1
    return t * mask.reshape(t.shape)


def prune_random(t: torch.Tensor, density: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """DARE: each entry kept with probability ``density`` and rescaled by ``1/density``
    (the expectation stays ``t``)."""
    if density >= 1:
        return t
    mask = torch.bernoulli(torch.full_like(t, density), generator=generator)
    return t * mask / density


def _elect(stacked: torch.Tensor, method: SignMethod) -> torch.Tensor:
    """(n, …) -> (n, …) bool: where each tensor's sign is the elected one."""
    sign = stacked.sign()
    votes = stacked.sum(dim=0) if method == "total" else sign.sum(dim=0)
    return sign == torch.where(votes >= 0, 1, -1)


def mix_tensors(mix: TensorMix, tensors: list[torch.Tensor], weights: torch.Tensor,
                density: float | None = None, majority_sign_method: SignMethod = "total",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One tensor from ``tensors`` (each of one shape) and ``weights: (n,)`` by ``mix``
    (formulas in the module doc); ``density`` is required by every mix but ``"linear"``."""
    if mix in ("ties", "magnitude_prune"):
        tensors = [prune_magnitude(t, density) for t in tensors]          # type: ignore[arg-type]
    elif mix in ("dare_linear", "dare_ties"):
        tensors = [prune_random(t, density, generator) for t in tensors]  # type: ignore[arg-type]
    stacked = torch.stack(tensors, dim=0)                                 # (n, …)
    w = weights.view(weights.shape + (1,) * (stacked.dim() - 1))
    if mix in ("ties", "dare_ties"):
        keep = _elect(stacked, majority_sign_method)
        return (stacked * w * keep).sum(dim=0) / torch.clamp(keep.sum(dim=0), min=1.0)
    return (stacked * w).sum(dim=0)
