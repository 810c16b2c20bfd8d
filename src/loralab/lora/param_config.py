"""The one check of ``target_parameters`` (PEFT's ``LoraConfig.target_parameters``).

LoRA on a bare ``nn.Parameter`` (:class:`~loralab.lora.param.LoRAParameter`, PEFT's
``ParamWrapper``) adds ``ΔW`` to the weight for the duration of its module's forward, so it
cannot apply dropout to the input, nor a ``lora_B`` bias, nor DoRA's per-row norm, nor a
transposed storage flag, nor an init that rewrites a ``weight`` attribute: PEFT refuses each of
these, and so does this check, naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import LoralabError

__all__ = ["PARAM_INITS", "check_target_parameters"]

PARAM_INITS = ("default", "random", "gaussian")   # init kinds LoRA on a parameter supports


def check_target_parameters(config: Any) -> list[str] | None:
    """``config.target_parameters`` checked (``None``, or a list of non-empty names), and the
    other fields checked against it; returns the list (``[]`` becomes ``None``)."""
    value = config.target_parameters
    if value is None or (isinstance(value, Sequence) and not isinstance(value, str)
                         and not value):
        return None
    if isinstance(value, str) or not isinstance(value, Sequence | set | frozenset) or any(
            not isinstance(v, str) or not v for v in value):
        raise LoralabError(f"target_parameters={value!r} is not allowed; give a list of "
                           "parameter names or suffixes, e.g. ['mlp.experts.gate_up_proj']")
    bad = [(name, v) for name, v, off in (("lora_dropout", config.lora_dropout, 0),
                                         ("use_dora", config.use_dora, False),
                                         ("lora_bias", config.lora_bias, False),
                                         ("fan_in_fan_out", config.fan_in_fan_out, False))
           if v != off]
    if bad:
        name, v = bad[0]
        raise LoralabError(f"{name}={v!r} is not allowed with target_parameters (LoRA on an "
                           "nn.Parameter); PEFT's ParamWrapper refuses it too")
    if config.init.kind not in PARAM_INITS:
        raise LoralabError(f"init_lora_weights={config.init_lora_weights!r} is not allowed "
                           "with target_parameters; use True, False or 'gaussian'")
    return sorted(set(value)) if isinstance(value, set | frozenset) else list(value)
