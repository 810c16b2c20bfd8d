"""Which modules get LoRA, and which are trained in full: PEFT's matching rules.

For a module path ``p`` (``model.named_modules()``), in PEFT's order:

1. ``exclude_modules`` matches ``p`` (a regex: full match; a list: ``p`` equals an entry or
   ends with ``"." + entry``): never wrapped;
2. ``p`` lies in a ``modules_to_save`` module (``(^|.*\\.)m($|\\..*)``): trained in full
   instead;
3. ``target_modules`` a regex: ``re.fullmatch``; a list: ``p`` equals an entry, or ends with
   ``"." + entry`` and then, with ``layers_to_transform``, its layer index (the number after
   ``layers_pattern``, or the first ``.<name>.<i>.`` in ``p``) is one of those asked;
4. ``"all-linear"``: every ``nn.Linear`` / ``Conv1D`` but the model's output head
   (``get_output_embeddings()``, or for ``task_type="SEQ_CLS"`` its ``score``/``classifier``).

Layer types that take LoRA: ``nn.Linear``, transformers' ``Conv1D`` (GPT-2), ``nn.Embedding``,
``nn.Conv1d``, ``nn.Conv2d``, ``nn.Conv3d``, ``nn.MultiheadAttention`` (its ``in_proj_weight``
and ``out_proj`` together, as PEFT). No import of transformers: ``Conv1D`` is known by its
shape.
"""

from __future__ import annotations

import re
from dataclasses import replace

from torch import nn

from ..errors import LoralabError
from .config import AdapterConfig
from .layer import LoRALayer
from .storage import is_conv1d

__all__ = [
    "block_index",
    "LAYER_TYPES",
    "find_targets",
    "is_conv1d",
    "lora_kind",
    "match_target",
    "saved_module_paths",
    "selected_names",
]

LAYER_TYPES = ("nn.Linear, transformers' Conv1D, nn.Embedding, nn.Conv1d, nn.Conv2d, "
               "nn.Conv3d, nn.MultiheadAttention")
SEQ_CLS_HEAD_NAMES = ("score", "classifier")


def block_index(path: str) -> int:
    """The block a module path sits in: its first integer part (``hf.model.layers.12.mlp``
    -> 12; ``blocks.2.attn.q_proj`` -> 2; 0 when it has none)."""
    return next((int(p) for p in path.split(".") if p.isdigit()), 0)


def lora_kind(module: nn.Module) -> str | None:
    """``"linear"``, ``"conv1d_hf"``, ``"embedding"``, ``"conv"``, ``"mha"`` or ``None``
    (no LoRA)."""
    if isinstance(module, nn.Linear):
        return "linear"
    if is_conv1d(module):
        return "conv1d_hf"
    if isinstance(module, nn.Embedding):
        return "embedding"
    if type(module) in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        return "conv"
    if isinstance(module, nn.MultiheadAttention):
        return "mha"
    return None


def _in_list_or_regex(spec: list[str] | str, name: str) -> bool:
    if isinstance(spec, str):
        return re.fullmatch(spec, name) is not None
    return name in spec or any(name.endswith(f".{t}") for t in spec)


def _layer_index(config: AdapterConfig, name: str) -> int | None:
    pattern = config.layers_pattern
    if not pattern:
        m = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name)
        return int(m.group("idx")) if m else None
    for p in [pattern] if isinstance(pattern, str) else pattern:
        m = re.match(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", name)
        if m:
            return int(m.group("idx"))
    return None


def _in_saved(config: AdapterConfig, name: str) -> bool:
    return any(re.match(rf"(^|.*\.){m}($|\..*)", name) for m in config.saved_modules())


def match_target(config: AdapterConfig, name: str) -> bool:
    """Whether ``config`` puts LoRA on the module at path ``name`` (rules 1–3 above; with
    ``"all-linear"`` the caller resolves the names first, see :func:`find_targets`)."""
    if config.exclude_modules is not None and _in_list_or_regex(config.exclude_modules, name):
        return False
    if _in_saved(config, name):
        return False
    spec = config.target_modules
    if spec is None or spec == "all-linear":
        raise LoralabError("target_modules='all-linear' needs the model; use find_targets")
    if isinstance(spec, str):
        return re.fullmatch(spec, name) is not None
    if name in spec:
        return True
    if not any(name.endswith(f".{t}") for t in spec):
        return False
    wanted = config.layers_to_transform
    if wanted is None or wanted == []:
        return True
    idx = _layer_index(config, name)
    return idx is not None and (idx == wanted if isinstance(wanted, int) else idx in wanted)


def _output_heads(model: nn.Module, config: AdapterConfig) -> set[str]:
    """Paths of the output head(s) that ``"all-linear"`` leaves out, as PEFT does."""
    heads: list[nn.Module] = []
    get_out = getattr(model, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    if out is not None:
        heads.append(out)
    elif config.task_type == "SEQ_CLS":
        head = next((getattr(model, n) for n in SEQ_CLS_HEAD_NAMES
                     if isinstance(getattr(model, n, None), nn.Module)), None)
        heads += [head] if head is not None else []
    return {n for n, m in model.named_modules() if any(m is h for h in heads)}


def _inside(name: str, roots: list[str]) -> bool:
    return any(name.startswith(f"{p}.") if p else True for p in roots)


def selected_names(model: nn.Module, config: AdapterConfig, skip: list[str]) -> list[str]:
    """The paths ``config`` selects by name alone (no type check), outside ``skip``."""
    if config.target_modules == "all-linear":
        heads = _output_heads(model, config)
        names = [n for n, m in model.named_modules()
                 if n and (lora_kind(m) in ("linear", "conv1d_hf")
                           or type(m).__name__ == "LoRALinear")
                 and n not in heads and not _inside(n, skip)]
        resolved = replace(config, target_modules=names or ["-"])
        return [n for n in names if match_target(resolved, n)]
    return [n for n, _ in model.named_modules()
            if n and not _inside(n, skip) and match_target(config, n)]


def find_targets(model: nn.Module, config: AdapterConfig, skip: list[str] | None = None,
                 allow_lora: bool = False) -> list[str]:
    """The module paths ``config`` selects, checked; ``model`` is not changed.

    ``skip``: paths whose insides are not searched (modules that already carry LoRA).
    ``allow_lora``: a selected LoRA layer is fine (a new named adapter goes into it).
    Raises :class:`LoralabError` when nothing matches (listing the layers that could take
    LoRA), when a match is a type without LoRA support, or is shared by several paths.
    """
    skip = list(skip or [])
    names = selected_names(model, config, skip)
    for name in names:
        mod = model.get_submodule(name)
        parent = model.get_submodule(name.rpartition(".")[0])
        if isinstance(parent, nn.MultiheadAttention):
            raise LoralabError(f"module {name!r} belongs to an nn.MultiheadAttention, which "
                               "reads its weight directly; LoRA there would have no effect")
        if isinstance(mod, LoRALayer) and allow_lora:
            continue
        if isinstance(mod, LoRALayer):
            raise LoralabError(f"module {name!r} already has LoRA; call unload_lora (or "
                               "load into it) instead of injecting twice")
        if lora_kind(mod) is None:
            raise LoralabError(f"target_modules matches module {name!r}, which is a "
                               f"{type(mod).__name__}; LoRA is supported on {LAYER_TYPES}")
    if not names:
        able = [n for n, m in model.named_modules()
                if n and lora_kind(m) is not None and not _inside(n, skip)]
        shown = ", ".join(able[:40]) + (f", ... ({len(able)} in all)" if len(able) > 40 else "")
        raise LoralabError(f"target_modules={config.target_modules!r} matches no module; "
                           f"the layers that can take LoRA are: {shown or '(none)'}")
    paths: dict[int, list[str]] = {}
    for name, mod in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(mod), []).append(name)
    for name in names:
        same = paths[id(model.get_submodule(name))]
        if len(same) > 1:
            raise LoralabError(f"module {name!r} is also reachable as {same[1]!r}; LoRA on a "
                               "module shared by several paths is not supported")
    return names


def saved_module_paths(model: nn.Module, config: AdapterConfig, skip: list[str] | None = None
                       ) -> list[str]:
    """Paths of the modules trained in full (``modules_to_save`` and the task's heads):
    PEFT's rule, a path that ends with a listed name; the outermost match wins."""
    wanted = config.saved_modules()
    out: list[str] = []
    for name, _ in model.named_modules():
        if not name or _inside(name, out) or _inside(name, list(skip or [])):
            continue
        if any(name.endswith(w) for w in wanted):
            out.append(name)
    return out
