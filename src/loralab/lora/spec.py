"""``LayerSpec``: one adapter's settings on one layer, checked once, passed to the layers.

An :class:`~loralab.lora.AdapterConfig` describes a whole model (patterns, targets, saved
modules); each wrapped module gets a :class:`LayerSpec` with its own ``r`` and ``lora_alpha``
resolved (``rank_pattern`` / ``alpha_pattern``, :meth:`AdapterConfig.layer_spec`). The layer
constructors and ``add_adapter`` take a spec, or the keyword arguments of
:meth:`LayerSpec.of` (the layers' historical signature), which build one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import LoralabError
from .init_option import InitOption, parse_init

__all__ = ["MAX_ALPHA", "LayerSpec", "as_layer_spec", "check_alpha", "check_layer_args"]

MAX_ALPHA = 1e6      # the CLI's --alpha bound too: a larger α makes s·B A overflow float32


def check_alpha(name: str, a: object) -> None:
    """``a`` a finite number in ``(0, MAX_ALPHA]`` (α, or a value of ``alpha_pattern``):
    ``lora_alpha=1e308`` would scale every update to inf."""
    if isinstance(a, bool) or not isinstance(a, int | float) or not math.isfinite(a) or a <= 0:
        raise LoralabError(f"{name}={a!r} is not allowed; it must be a finite number > 0")
    if a > MAX_ALPHA:
        raise LoralabError(f"{name}={a!r} is not allowed; it must be at most {MAX_ALPHA:g} (the "
                           "update is scaled by α/r: a larger α turns the outputs into inf/NaN)")


def check_layer_args(r: object, lora_alpha: object, lora_dropout: object, use_rslora: object,
                     init_lora_weights: object) -> None:
    """The one check of a LoRA layer's settings (the config's and a layer's constructor's):
    ``r`` an integer ≥ 1, ``lora_alpha`` finite > 0, ``0 ≤ lora_dropout < 1``, ``use_rslora`` a
    bool, ``init_lora_weights`` an :class:`InitOption` or PEFT's value (True, False,
    ``"gaussian"``, ``"pissa"``, ``"pissa_niter_K"`` with K ≥ 1, ``"olora"``, ``"loftq"``)."""
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise LoralabError(f"r={r!r} is not allowed; the rank must be an integer >= 1")
    check_alpha("lora_alpha", lora_alpha)
    p = lora_dropout
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
        raise LoralabError(f"lora_dropout={p!r} is not allowed; it must be in [0, 1)")
    if not isinstance(use_rslora, bool):
        raise LoralabError(f"use_rslora={use_rslora!r} is not allowed; use True/False")
    parse_init(init_lora_weights)


@dataclass(frozen=True)
class LayerSpec:
    """One adapter on one layer: rank ``r``, ``lora_alpha`` (scale ``α/r``, ``α/√r`` with
    ``use_rslora``), ``lora_dropout`` on the LoRA input, the ``init``, ``lora_bias`` (``B``
    has a bias), ``use_dora`` and ``autocast_adapter_dtype`` (factors in float32 over a
    float16/bfloat16 base). Checked in ``__post_init__``."""

    r: int
    lora_alpha: float
    lora_dropout: float = 0.0
    use_rslora: bool = False
    init: InitOption = field(default_factory=InitOption)
    lora_bias: bool = False
    use_dora: bool = False
    autocast_adapter_dtype: bool = True

    def __post_init__(self) -> None:
        check_layer_args(self.r, self.lora_alpha, self.lora_dropout, self.use_rslora,
                         self.init)
        if not isinstance(self.init, InitOption):
            raise LoralabError(f"init={self.init!r} is not allowed; give an InitOption "
                               "(loralab.lora.init_option.parse_init makes one)")
        for name in ("lora_bias", "use_dora", "autocast_adapter_dtype"):
            if not isinstance(getattr(self, name), bool):
                raise LoralabError(f"{name}={getattr(self, name)!r} is not allowed; use "
                                   "True/False")

    @property
    def scaling(self) -> float:
        """``s = α/r``, or ``α/√r`` with rsLoRA."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    @classmethod
    def of(cls, r: int, lora_alpha: float, lora_dropout: float = 0.0, use_rslora: bool = False,
           init_lora_weights: bool | str | InitOption = True, *, lora_bias: bool = False,
           use_dora: bool = False, autocast_adapter_dtype: bool = True,
           init_options: dict | None = None) -> LayerSpec:
        """A spec from the layers' keyword arguments (PEFT's names); ``init_lora_weights`` is
        parsed here, with ``init_options`` as LoftQ's ``loftq_config``."""
        check_layer_args(r, lora_alpha, lora_dropout, use_rslora, True)
        return cls(r, lora_alpha, lora_dropout, use_rslora,
                   parse_init(init_lora_weights, init_options), lora_bias, use_dora,
                   autocast_adapter_dtype)


def as_layer_spec(spec: LayerSpec | int, *args: object, **kwargs: object) -> LayerSpec:
    """``spec`` itself, or :meth:`LayerSpec.of` of ``(spec, *args, **kwargs)`` (``spec`` the
    rank)."""
    if isinstance(spec, LayerSpec):
        if args or kwargs:
            raise LoralabError("give a LayerSpec or the layer's arguments, not both")
        return spec
    return LayerSpec.of(spec, *args, **kwargs)    # type: ignore[arg-type]
