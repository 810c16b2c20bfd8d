"""The init option, typed: PEFT's ``init_lora_weights`` (and ``loftq_config``) parsed once.

PEFT spells the init as a bool or a string (``True``, ``False``, ``"gaussian"``, ``"pissa"``,
``"pissa_niter_16"``, ``"olora"``, ``"loftq"``) and LoftQ's options as an untyped dict. loralab
parses that once, where it enters (:func:`parse_init`, called by
:class:`~loralab.lora.AdapterConfig` and the layers' constructors), into an
:class:`InitOption`; the PEFT value is written back only for ``adapter_config.json``
(:attr:`InitOption.peft_value`, :meth:`LoftQConfig.to_peft`). ``parse_init(o.peft_value,
o.loftq.to_peft() if o.loftq else None) == o`` for every option.

=================  =====================  ==================================================
PEFT value         ``kind``               what it does (``W0: (d_out, d_in)``)
=================  =====================  ==================================================
``True``           ``"default"``          A Kaiming-uniform (a = √5), B = 0
``False``          ``"random"``           A and B both random (the update starts non-zero)
``"gaussian"``     ``"gaussian"``         A ~ N(0, 1/r²), B = 0
``"pissa"``        ``"pissa"``            top-r SVD of W0 into the adapter (exact)
``"pissa_niter_K"`` ``"pissa"``, niter K  the same from ``torch.svd_lowrank`` (K ≥ 1)
``"olora"``        ``"olora"``            W0 = Q R: B = Q_r, A = R_r
``"loftq"``        ``"loftq"``            base ← Q(W0), ``s·B A`` ≈ W0 − Q(W0)
=================  =====================  ==================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import LoralabError
from .variants import INIT_VARIANTS

__all__ = ["INITS", "Init", "InitOption", "LoftQConfig", "parse_init"]

Init = Literal["default", "random", "gaussian", "pissa", "olora", "loftq"]
INITS: tuple[str, ...] = ("default", "random", "gaussian", "pissa", "olora", "loftq")
SPLIT_INITS: tuple[str, ...] = ("pissa", "olora", "loftq")     # they rewrite the base weight
_PISSA_NITER = re.compile(r"pissa_niter_([1-9]\d*)")           # the one parser of the string


@dataclass(frozen=True)
class LoftQConfig:
    """LoftQ's options (PEFT's ``loftq_config``): ``bits`` of the quantized base (4 or 8)
    and ``iters`` alternating steps (≥ 1)."""

    bits: Literal[4, 8] = 4
    iters: int = 1

    def __post_init__(self) -> None:
        if self.bits not in (4, 8) or isinstance(self.bits, bool):
            raise LoralabError(f"loftq_bits={self.bits!r} is not allowed; use 4 or 8")
        if isinstance(self.iters, bool) or not isinstance(self.iters, int) or self.iters < 1:
            raise LoralabError(f"loftq_iter={self.iters!r} is not allowed; it must be an "
                               "integer >= 1")

    @classmethod
    def from_peft(cls, value: object) -> LoftQConfig:
        """From PEFT's dict ``{"loftq_bits": 4 | 8, "loftq_iter": N}`` (missing: 4 and 1)."""
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise LoralabError(f"loftq_config={value!r} is not allowed; give a dict such as "
                               "{'loftq_bits': 4, 'loftq_iter': 1}")
        unknown = sorted(set(value) - {"loftq_bits", "loftq_iter"})
        if unknown:
            raise LoralabError(f"loftq_config key {unknown[0]!r} is not allowed; use "
                               "loftq_bits and loftq_iter")
        return cls(bits=value.get("loftq_bits", 4), iters=value.get("loftq_iter", 1))

    def to_peft(self) -> dict[str, int]:
        """PEFT's ``loftq_config`` dict."""
        return {"loftq_bits": self.bits, "loftq_iter": self.iters}


@dataclass(frozen=True)
class InitOption:
    """How an adapter's ``A`` and ``B`` start (see the module table): ``kind``, the power
    iterations of the fast PiSSA (``pissa_niter``, None for the exact SVD) and LoftQ's
    options (``loftq``, only for ``kind="loftq"``)."""

    kind: Init = "default"
    pissa_niter: int | None = None
    loftq: LoftQConfig | None = None

    def __post_init__(self) -> None:
        if self.kind not in INITS:
            raise LoralabError(f"init kind {self.kind!r} is not allowed; use one of "
                               f"{', '.join(INITS)}")
        if self.pissa_niter is not None and (self.kind != "pissa" or self.pissa_niter < 1):
            raise LoralabError(f"pissa_niter={self.pissa_niter!r} is only allowed (>= 1) with "
                               "kind='pissa'")
        if (self.loftq is not None) != (self.kind == "loftq"):
            raise LoralabError("loftq options go with kind='loftq' (and only with it)")

    @property
    def splits_base(self) -> bool:
        """PiSSA, OLoRA and LoftQ: the init rewrites the base weight (Linear/Conv1D only)."""
        return self.kind in SPLIT_INITS

    @property
    def peft_value(self) -> bool | str:
        """PEFT's ``init_lora_weights`` value: ``True``, ``False`` or its string."""
        if self.kind == "default":
            return True
        if self.kind == "random":
            return False
        if self.pissa_niter is not None:
            return f"pissa_niter_{self.pissa_niter}"
        return self.kind


def parse_init(value: object, loftq_config: object = None) -> InitOption:
    """PEFT's ``init_lora_weights`` (and, for ``"loftq"``, its ``loftq_config``) as an
    :class:`InitOption`; an :class:`InitOption` is returned as it is. Anything else raises
    :class:`LoralabError` naming the allowed values."""
    if isinstance(value, InitOption):
        return value
    if value is True:
        return InitOption("default")
    if value is False:
        return InitOption("random")
    if isinstance(value, str):
        if value in ("gaussian", "pissa", "olora"):
            return InitOption(value)        # type: ignore[arg-type]
        if value == "loftq":
            return InitOption("loftq", loftq=LoftQConfig.from_peft(loftq_config))
        m = _PISSA_NITER.fullmatch(value)
        if m is not None:
            return InitOption("pissa", pissa_niter=int(m.group(1)))
    hint = f" ({INIT_VARIANTS[value]} is not implemented)" \
        if isinstance(value, str) and value in INIT_VARIANTS else ""
    raise LoralabError(f"init_lora_weights={value!r} is not allowed; use True, False, "
                       f"'gaussian', 'pissa', 'pissa_niter_K', 'olora' or 'loftq'{hint}")
