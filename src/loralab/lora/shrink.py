"""Shrink a saved LoRA adapter to a lower rank: Eckart–Young applied to a real file.

Each module's update ``ΔW = s·B A`` (rank ≤ r) is factored exactly through its ``r × r``
core (``B = Q_B R_B``, ``Aᵀ = Q_A R_A``, ``s·R_B R_Aᵀ = U_c Σ V_cᵀ``, so ``ΔW = U Σ Vᵀ``
with ``U = Q_B U_c``, ``V = Q_A V_c``: no ``d_out × d_in`` SVD) and cut to rank ``r′``::

    B′ = U_{:r′} √Σ_{r′},   A′ = √Σ_{r′} V_{:r′}ᵀ,   scale 1     (ΔW′ = B′ A′)
    ‖ΔW − ΔW′‖_F = √(Σ_{i>r′} σ_i²)                               (Eckart–Young: the least)

``r′`` is ``rank`` for every module (a module already at or below it keeps its own), or,
with ``energy``, each module's smallest rank keeping that share of ``‖ΔW‖_F²`` (as PEFT's
LoRA conversion takes a float). The result is a PEFT adapter (``r`` the largest ``r′``,
``lora_alpha = r``, ``rank_pattern`` / ``alpha_pattern`` for the modules with other ranks,
so every scale is 1); other tensors (saved modules, biases) are copied as they are, a
``lora_bias`` is multiplied by the old scale. Per module :class:`ShrunkModule` carries the
error Eckart–Young predicts and the one measured on the written (rounded) factors.
Convolutions are cut on their kernel flattened to ``(C_out, C_in·k…)``; DoRA adapters and
grouped convolutions are refused (DoRA's magnitude is tied to the full ``ΔW``).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import save as st_save

from ..errors import LoralabError
from ..fileio import atomic_dir
from .adapters import CONFIG_NAME, WEIGHTS_NAME
from .config import AdapterConfig, config_to_peft
from .keys import lora_key, parse_lora_key
from .loading import read_adapter

__all__ = ["ShrinkResult", "ShrunkModule", "keep_rank", "shrink_adapter", "shrink_factors"]


@dataclass(frozen=True)
class ShrunkModule:
    """One module: ``ΔW``'s ``shape`` ``(d_out, d_in)`` (a kernel flattened), ``rank →
    new_rank``, ``norm = ‖ΔW‖_F``, ``predicted = √Σ_{i>r′} σ_i²``, ``measured = ‖ΔW −
    ΔW′‖_F`` (of the factors as written), ``kept = Σ_{i≤r′} σ_i² / ‖ΔW‖_F²``."""

    path: str
    shape: tuple[int, int]
    rank: int
    new_rank: int
    norm: float
    predicted: float
    measured: float
    kept: float


@dataclass(frozen=True)
class ShrinkResult:
    """What :func:`shrink_adapter` wrote: the modules in file order and the new config."""

    modules: list[ShrunkModule]
    config: AdapterConfig
    out: Path


def keep_rank(sigma: torch.Tensor, rank: int | None, energy: float | None) -> int:
    """``r′`` from the singular values ``sigma`` (descending): ``min(rank, len)``, or the
    smallest rank whose ``Σ σ_i²`` reaches ``energy·‖σ‖²`` (at least 1)."""
    if rank is not None:
        return min(rank, int(sigma.numel()))
    sq = sigma.double() ** 2
    total = float(sq.sum())
    if total == 0.0:
        return 1
    cum = torch.cumsum(sq, 0) / total
    return min(int((cum < energy * (1 - 1e-12)).sum()) + 1, int(sigma.numel()))


def _svd_of_product(a: torch.Tensor, b: torch.Tensor, scale: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U, σ, Vᵀ`` of ``scale·B A`` (B: (m, r), A: (r, n)) through the r × r core, float64."""
    qb, rb = torch.linalg.qr(b.double())            # (m, r), (r, r)
    qa, ra = torch.linalg.qr(a.double().T)          # (n, r), (r, r)
    u, s, vh = torch.linalg.svd(scale * rb @ ra.T)  # (r, r) core
    return qb @ u, s, vh @ qa.T                     # (m, r), (r,), (r, n)


def _frobenius_gap(a: torch.Tensor, b: torch.Tensor, scale: float, a2: torch.Tensor,
                   b2: torch.Tensor, rows: int = 4096) -> float:
    """``‖scale·B A − B₂ A₂‖_F`` in float64, dense, a block of rows at a time."""
    total = 0.0
    ad, a2d = a.double(), a2.double()
    for i in range(0, b.shape[0], rows):
        diff = scale * b[i:i + rows].double() @ ad - b2[i:i + rows].double() @ a2d
        total += float((diff ** 2).sum())
    return math.sqrt(total)


def shrink_factors(a: torch.Tensor, b: torch.Tensor, scale: float, path: str = "",
                   rank: int | None = None, energy: float | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, ShrunkModule]:
    """``(A′, B′, record)`` for ``ΔW = scale·B A`` (A: (r, d_in[, k…]), B: (d_out, r[, 1…]));
    A′, B′ in the factors' dtype and layout, scale 1 (module doc)."""
    fa, fb = a.flatten(1), b.flatten(1)                      # (r, d_in·k…), (d_out, r)
    u, s, vh = _svd_of_product(fa, fb, scale)
    keep = keep_rank(s, rank, energy)
    root = s[:keep].sqrt()
    b2 = (u[:, :keep] * root).to(b.dtype)                    # (d_out, r′)
    a2 = (root[:, None] * vh[:keep]).to(a.dtype)             # (r′, d_in·k…)
    sq = s.double() ** 2
    total = float(sq.sum())
    record = ShrunkModule(path, (int(fb.shape[0]), int(fa.shape[1])), int(a.shape[0]), keep,
                          math.sqrt(total), math.sqrt(float(sq[keep:].sum())),
                          _frobenius_gap(fa, fb, scale, a2, b2),
                          float(sq[:keep].sum()) / total if total else 1.0)
    return (a2.reshape(keep, *a.shape[1:]), b2.reshape(b.shape[0], keep, *b.shape[2:]),
            record)


def _check_request(config: AdapterConfig, rank: object, energy: object) -> None:
    if (rank is None) == (energy is None):
        raise LoralabError("give exactly one of rank (an integer) or energy (a share of "
                           "‖ΔW‖_F² in (0, 1])")
    top = max(config.r, *config.rank_pattern.values()) if config.rank_pattern else config.r
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int)
                             or not 1 <= rank <= top):
        raise LoralabError(f"rank={rank!r} is not allowed; give an integer from 1 to the "
                           f"adapter's rank ({top})")
    if energy is not None and (isinstance(energy, bool) or not isinstance(energy, int | float)
                               or not 0 < energy <= 1):
        raise LoralabError(f"energy={energy!r} is not allowed; give the share of ‖ΔW‖_F² to "
                           "keep, 0 < energy <= 1")
    if config.use_dora:
        raise LoralabError("the adapter uses DoRA (use_dora=True); its magnitude is tied to "
                           "the full ΔW, so it cannot be shrunk by rank")


def _group(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{module path: {"A", "B", "bias", "emb"}}`` of the LoRA factors in ``tensors``."""
    mods: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        parsed = parse_lora_key(key)
        if parsed is None or parsed[1] == "magnitude":
            continue
        path, part, emb = parsed
        mods.setdefault(path, {})[part] = t
        if emb:
            mods[path]["emb"] = t
        if not bool(torch.isfinite(t).all()):
            raise LoralabError(f"adapter tensor {key!r} has NaN/Inf entries; refusing to "
                               "shrink it")
    mods = dict(sorted(mods.items(), key=lambda kv: [int(t) if t.isdigit() else t
                                                     for t in re.split(r"(\d+)", kv[0])]))
    for path, parts in mods.items():
        if "A" not in parts or "B" not in parts:
            raise LoralabError(f"module {path!r} has only one LoRA factor in the file")
        if parts["B"].shape[1] != parts["A"].shape[0]:
            raise LoralabError(f"module {path!r} is a grouped convolution (B has "
                               f"{parts['B'].shape[1]} of {parts['A'].shape[0]} rank "
                               "channels); shrinking it is not supported")
    return mods


def _new_config(config: AdapterConfig, ranks: dict[str, int]) -> AdapterConfig:
    top = max(ranks.values())
    pattern = {re.escape(p): r for p, r in ranks.items() if r != top}
    return replace(config, r=top, lora_alpha=top, use_rslora=False, rank_pattern=pattern,
                   alpha_pattern=dict(pattern), init_lora_weights=True, loftq_config={})


def shrink_adapter(adapter: str | os.PathLike[str], out: str | os.PathLike[str], *,
                   rank: int | None = None, energy: float | None = None) -> ShrinkResult:
    """Write the adapter in folder ``adapter`` cut to ``rank`` (or to each module's smallest
    rank keeping ``energy`` of ``‖ΔW‖_F²``) as a new PEFT adapter folder ``out`` (which must
    not exist). Everything is checked, and every module computed, before ``out`` is made."""
    out = Path(out)
    config, tensors = read_adapter(adapter)
    _check_request(config, rank, energy)
    if out.exists() or out.is_symlink():
        raise LoralabError(f"output folder {str(out)!r} already exists; loralab does not "
                           "overwrite it (give a new --out)")
    mods = _group(tensors)
    if not mods:
        raise LoralabError(f"adapter folder {str(adapter)!r} holds no LoRA factors")
    new = {k: v for k, v in tensors.items() if parse_lora_key(k) is None}
    records = []
    for path, parts in mods.items():
        r_old = int(parts["A"].shape[0])
        scale = config.alpha_for(path) / (math.sqrt(r_old) if config.use_rslora else r_old)
        a2, b2, rec = shrink_factors(parts["A"], parts["B"], scale, path, rank, energy)
        emb = "emb" in parts
        new[lora_key(path, "A", emb)] = a2.contiguous()
        new[lora_key(path, "B", emb)] = b2.contiguous()
        if "bias" in parts:
            new[lora_key(path, "bias")] = (parts["bias"].double() * scale).to(parts["bias"].dtype)
        records.append(rec)
    new_config = _new_config(config, {r.path: r.new_rank for r in records})
    blob = st_save(new, metadata={"format": "pt"})
    text = json.dumps(config_to_peft(new_config), indent=2, sort_keys=True)
    with atomic_dir(out) as tmp:
        (tmp / WEIGHTS_NAME).write_bytes(blob)
        (tmp / CONFIG_NAME).write_text(text, encoding="utf-8")
    return ShrinkResult(records, new_config, out)

