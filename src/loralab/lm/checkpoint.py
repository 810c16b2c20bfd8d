"""Weights and resumable training checkpoints on disk: safetensors + JSON, never pickle.

* :func:`save_weights` / :func:`load_weights`: a flat ``{name: tensor}`` safetensors file with
  a JSON string in its metadata (used for the cached pretrained base and finished runs),
  including the SHA-256 of the tensors (:func:`tensors_sha256`), checked on every load.
* :func:`save_checkpoint` / :func:`load_checkpoint`: ``<prefix>.safetensors`` holds the
  trainable parameters (``model.<name>``) and AdamW's state (``optim.<i>.<key>``);
  ``<prefix>.json`` holds the step, the loss history, the optimizer's param groups, a
  ``run_key`` naming the run and the SHA-256 of the tensor file. Both are written atomically,
  tensors first, so a JSON file always describes a complete tensor file.

Loading validates everything (hash, names, shapes) before touching the model: a corrupt or
foreign file raises :class:`LoralabError` and leaves the model and optimizer unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import LoralabError
from ..fileio import atomic_write, atomic_write_json

__all__ = [
    "TrainingInterrupted",
    "load_checkpoint",
    "load_weights",
    "non_finite",
    "remove_checkpoint",
    "save_checkpoint",
    "save_weights",
    "tensors_sha256",
]

_FORMAT = "loralab-checkpoint-1"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`loralab.lm.train.train`; ``checkpoint`` is the JSON file it saved
    (``None`` when it had no checkpoint to write)."""

    def __init__(self, checkpoint: str | None = None) -> None:
        super().__init__(checkpoint or "")
        self.checkpoint = checkpoint


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and values (of their safetensors form)."""
    from safetensors.torch import save

    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return hashlib.sha256(save(cpu)).hexdigest()


def non_finite(tensors: dict[str, torch.Tensor]) -> tuple[str, int] | None:
    """``(name, count)`` of the first floating tensor holding NaN/Inf values, else ``None``."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name, int((~torch.isfinite(t)).sum())
    return None


def save_weights(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
                 metadata: dict | None = None) -> Path:
    """Write ``tensors`` (moved to CPU, made contiguous) as safetensors, atomically, with
    ``metadata`` and the tensors' SHA-256 (``metadata["sha256"]``)."""
    from safetensors.torch import save

    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = dict(metadata or {}, sha256=tensors_sha256(cpu))
    data = save(cpu, metadata={"loralab": json.dumps(meta)})
    return atomic_write(path, lambda fh: fh.write(data))


def load_weights(path: str | os.PathLike[str], *, what: str = "weights file",
                 advice: str = "delete it to rebuild") -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_weights`: ``(tensors, metadata)``.

    Raises :class:`LoralabError` naming the file (as ``what``, followed by ``advice``) if it
    is missing, not a regular file, not valid safetensors, or its tensors no longer match the
    SHA-256 stored when it was written (the checksum is not part of the returned metadata).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise LoralabError(f"{what} {str(path)!r} does not exist or is not a regular file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("loralab", "{}"))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise LoralabError(f"{what} {str(path)!r} is corrupt or not safetensors "
                           f"({type(exc).__name__}); {advice}") from None
    meta = meta if isinstance(meta, dict) else {}
    if "sha256" not in meta:
        raise LoralabError(f"{what} {str(path)!r} has no checksum (an older loralab wrote it), "
                           f"so it cannot be verified; {advice}")
    if tensors_sha256(tensors) != meta.pop("sha256"):
        raise LoralabError(f"{what} {str(path)!r} is corrupt: its tensors no longer match "
                           f"the SHA-256 stored when it was written; {advice}")
    return tensors, meta


def _paths(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = str(prefix)
    return Path(p + ".safetensors"), Path(p + ".json")


def save_checkpoint(prefix: str | os.PathLike[str], model: nn.Module,
                    optimizer: torch.optim.Optimizer, step: int, history: dict,
                    run_key: str) -> None:
    """Save the trainable parameters, AdamW state, ``step`` and ``history`` under ``prefix``."""
    from safetensors.torch import save

    tensors = {f"model.{n}": p.detach().cpu().contiguous().clone()
               for n, p in model.named_parameters() if p.requires_grad}
    sd = optimizer.state_dict()
    for idx, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    data = save(tensors)
    st_path, json_path = _paths(prefix)
    atomic_write(st_path, lambda fh: fh.write(data))
    atomic_write_json(json_path, {
        "format": _FORMAT, "run_key": run_key, "step": step, "history": history,
        "param_groups": sd["param_groups"],
        "weights_sha256": hashlib.sha256(data).hexdigest(),
    })


def _check_progress(meta: dict, where: str, max_step: int | None) -> None:
    """``step`` an integer in ``0..max_step`` and ``history`` lists of finite numbers: a
    checkpoint saying ``"step": -5`` is refused, never resumed with other numbers."""
    step, history = meta.get("step"), meta.get("history", {})
    top = max_step if max_step is not None else float("inf")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= top:
        allowed = f"0..{max_step}" if max_step is not None else "an integer >= 0"
        raise LoralabError(f"{where} says step {step!r}, which is not a step of this run "
                           f"({allowed}); delete it to start over")
    ok = isinstance(history, dict) and all(
        isinstance(v, list) and all(not isinstance(x, bool) and isinstance(x, int | float)
                                    and math.isfinite(x) for x in v) for v in history.values())
    if not ok:
        raise LoralabError(f"{where} holds a history that is not lists of finite numbers; "
                           "delete it to start over")


def load_checkpoint(prefix: str | os.PathLike[str], model: nn.Module,
                    optimizer: torch.optim.Optimizer, run_key: str,
                    max_step: int | None = None) -> dict[str, Any] | None:
    """Restore a checkpoint saved by :func:`save_checkpoint`; ``None`` if there is none.

    Returns ``{"step", "history"}``. Raises :class:`LoralabError` (model untouched) when the
    files are corrupt, belong to another run (``run_key`` differs), do not fit the model, or
    say a step outside ``0..max_step`` (or a history that is not finite numbers).
    """
    from safetensors.torch import load

    st_path, json_path = _paths(prefix)
    if not json_path.exists():
        return None
    where = f"checkpoint {str(json_path)!r}"
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        data = st_path.read_bytes()
    except (OSError, ValueError) as exc:
        raise LoralabError(f"{where} cannot be read ({type(exc).__name__}); "
                           "delete it to start over") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise LoralabError(f"{where} is not a loralab checkpoint; delete it to start over")
    if meta.get("run_key") != run_key:
        raise LoralabError(f"{where} belongs to another run ({meta.get('run_key')!r}, expected "
                           f"{run_key!r}); delete it to start over")
    _check_progress(meta, where, max_step)
    if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
        raise LoralabError(f"{where} is corrupt: its tensor file does not match; "
                           "delete it to start over")
    try:
        tensors = load(data)
    except Exception:
        raise LoralabError(f"{where} is corrupt: unreadable tensors; delete it") from None
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    wanted = {f"model.{n}": p for n, p in params.items()}
    got = {k for k in tensors if k.startswith("model.")}
    if got != set(wanted):
        raise LoralabError(f"{where} does not fit this model (different trainable "
                           "parameters); delete it to start over")
    for k, p in wanted.items():
        if tensors[k].shape != p.shape:
            raise LoralabError(f"{where} does not fit this model: {k[6:]} has shape "
                               f"{tuple(tensors[k].shape)}, expected {tuple(p.shape)}")
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v   # load_state_dict moves it
    saved_sd = {"state": state, "param_groups": meta.get("param_groups")}
    backup = optimizer.state_dict()
    try:
        optimizer.load_state_dict(saved_sd)
    except Exception:
        optimizer.load_state_dict(backup)
        raise LoralabError(f"{where} does not fit this optimizer; delete it") from None
    with torch.no_grad():
        for k, p in wanted.items():
            p.copy_(tensors[k].to(p.device, p.dtype))
    return {"step": int(meta["step"]), "history": meta.get("history", {})}


def remove_checkpoint(prefix: str | os.PathLike[str]) -> None:
    """Delete ``<prefix>.json`` and ``<prefix>.safetensors`` if present (JSON first)."""
    for path in reversed(_paths(prefix)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
