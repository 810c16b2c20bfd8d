"""``AdapterConfig``: which layers get LoRA and how, with PEFT's ``LoraConfig`` field names.

Matching rules are PEFT's (``peft.tuners.tuners_utils.check_target_module_exists``):

* ``target_modules`` as a list: a module path matches when it equals an entry or ends with
  ``"." + entry`` (``"q_proj"`` matches ``"model.layers.0.self_attn.q_proj"``, never
  ``"xq_proj"``);
* ``target_modules`` as a string: a regular expression that must match the *whole* path
  (:func:`re.fullmatch`);
* ``exclude_modules`` (same two forms) removes modules from the match.

Imports no torch, so configs can be built and checked cheaply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from ..errors import LoralabError

__all__ = ["AdapterConfig", "BiasKind", "InitKind", "check_layer_args", "match_target"]

InitKind = Literal["default", "gaussian", "pissa"]
BiasKind = Literal["none", "all", "lora_only"]


def _check_targets(value: object, field_name: str, allow_none: bool) -> list[str] | str | None:
    if value is None:
        if allow_none:
            return None
        raise LoralabError(f"{field_name}=None is not allowed; give module names or suffixes "
                           "(e.g. ['q_proj', 'v_proj']) or a regex string")
    if isinstance(value, str):
        if value.lower() == "all-linear":
            raise LoralabError(f"{field_name}={value!r} (PEFT's shorthand) is not supported; "
                               "list the modules or give a regex such as r'.*_proj'")
        if not value:
            raise LoralabError(f"{field_name}='' is not allowed; give a non-empty regex")
        try:
            re.compile(value)
        except re.error as exc:
            raise LoralabError(f"{field_name}={value!r} is not a valid regex: {exc}") from None
        return value
    if isinstance(value, Sequence | set | frozenset):
        items = list(value)
        bad = [v for v in items if not isinstance(v, str) or not v]
        if bad or not items:
            raise LoralabError(f"{field_name}={value!r} is not allowed; give a non-empty list "
                               "of non-empty module names (or one regex string)")
        return sorted(set(items)) if isinstance(value, set | frozenset) else items
    raise LoralabError(f"{field_name}={value!r} is not allowed; give a list of module names "
                       "or a regex string")


def check_layer_args(r: object, lora_alpha: object, lora_dropout: object, use_rslora: object,
                     init: object) -> None:
    """The one check of a LoRA layer's settings (the config's and the layer's constructor's):
    ``r`` an integer ≥ 1, ``lora_alpha`` finite > 0, ``0 ≤ lora_dropout < 1``, ``use_rslora`` a
    bool, ``init`` one of :data:`InitKind`. Raises :class:`LoralabError` naming the value."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise LoralabError(f"r={r!r} is not allowed; the rank must be an integer >= 1")
    a = lora_alpha
    if isinstance(a, bool) or not isinstance(a, int | float) or not math.isfinite(a) or a <= 0:
        raise LoralabError(f"lora_alpha={a!r} is not allowed; it must be a finite number > 0")
    p = lora_dropout
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
        raise LoralabError(f"lora_dropout={p!r} is not allowed; it must be in [0, 1)")
    if not isinstance(use_rslora, bool):
        raise LoralabError(f"use_rslora={use_rslora!r} is not allowed; use True/False")
    if init not in get_args(InitKind):
        raise LoralabError(f"init={init!r} is not allowed; use one of "
                           f"{', '.join(map(repr, get_args(InitKind)))}")


@dataclass
class AdapterConfig:
    """LoRA settings, named as in ``peft.LoraConfig`` (``adapter_config.json`` maps 1:1).

    r: rank (≥ 1). lora_alpha: α (> 0); the update is scaled by α/r, or α/√r when
    ``use_rslora``. target_modules: module names/suffixes, or a regex for the full path.
    lora_dropout: dropout probability on the LoRA branch's input, 0 ≤ p < 1.
    init: ``"default"`` (A Kaiming-uniform, B = 0; PEFT's ``init_lora_weights=True``),
    ``"gaussian"`` (A ~ N(0, 1/r²), B = 0) or ``"pissa"`` (top-r SVD moved into the adapter).
    bias: which biases train: ``"none"``, ``"all"``, ``"lora_only"`` (wrapped layers').
    exclude_modules: names/suffixes or a regex of modules never to wrap.
    """

    r: int = 8
    lora_alpha: float = 16
    target_modules: list[str] | str | None = field(default=None)
    lora_dropout: float = 0.0
    use_rslora: bool = False
    init: InitKind = "default"
    bias: BiasKind = "none"
    exclude_modules: list[str] | str | None = None

    def __post_init__(self) -> None:
        check_layer_args(self.r, self.lora_alpha, self.lora_dropout, self.use_rslora, self.init)
        if self.bias not in get_args(BiasKind):
            raise LoralabError(f"bias={self.bias!r} is not allowed; use one of "
                               f"{', '.join(map(repr, get_args(BiasKind)))}")
        self.target_modules = _check_targets(self.target_modules, "target_modules", False)
        self.exclude_modules = _check_targets(self.exclude_modules, "exclude_modules", True)

    @property
    def scaling(self) -> float:
        """α/r, or α/√r with rsLoRA."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)


def _matches(spec: list[str] | str, name: str) -> bool:
    if isinstance(spec, str):
        return re.fullmatch(spec, name) is not None
    return name in spec or any(name.endswith(f".{t}") for t in spec)


def match_target(config: AdapterConfig, name: str) -> bool:
    """Whether module path ``name`` is selected by ``config`` (PEFT's rules, see above)."""
    if config.exclude_modules is not None and _matches(config.exclude_modules, name):
        return False
    assert config.target_modules is not None  # checked in __post_init__
    return _matches(config.target_modules, name)
