"""PEFT's LoRA variants that loralab does not implement, each named for its refusal.

``peft.LoraConfig`` (0.21) carries research variants beside plain LoRA and DoRA. loralab
refuses each one where it enters (a ``LoraConfig``, its dict, an ``adapter_config.json``)
with one line naming the field and the method, instead of silently training or loading
plain LoRA in its place: :data:`FIELD_VARIANTS` (a config field switches it on) and
:data:`INIT_VARIANTS` (an ``init_lora_weights`` value selects it).
"""

from __future__ import annotations

from ..errors import LoralabError

__all__ = ["FIELD_VARIANTS", "INIT_VARIANTS", "refuse_field"]

FIELD_VARIANTS: dict[str, str] = {
    "kasa_config": "KaSA (Knowledge-aware Singular-value Adaptation)",
    "velora_config": "VeLoRA (a memory-saving backward pass over rank-1 sub-token projections)",
    "monteclora_config": "MonteCLoRA (Monte Carlo Low-Rank Adaptation)",
    "use_bdlora": "BD-LoRA (block-diagonal LoRA factors for tensor parallelism)",
    "arrow_config": "Arrow (routing among a library of LoRA experts)",
    "eva_config": "EVA (Explained Variance Adaptation, a data-driven init)",
    "corda_config": "CorDA (Context-oriented Decomposition Adaptation)",
    "lora_ga_config": "LoRA-GA (an init from approximated gradients)",
    "alora_invocation_tokens": "aLoRA (Activated LoRA, on from an invocation sequence)",
    "use_qalora": "QA-LoRA (Quantization-Aware LoRA, GPTQ only)",
    "layer_replication": "layer replication (a larger model from repeated layers)",
    "megatron_config": "Megatron-LM's tensor-parallel LoRA layers",
}
INIT_VARIANTS: dict[str, str] = {
    "mica": "MiCA (Minor Component Adaptation: B from the minor singular vectors)",
    "eva": "EVA (Explained Variance Adaptation)",
    "corda": "CorDA (Context-oriented Decomposition Adaptation)",
    "lora_ga": "LoRA-GA (an init from approximated gradients)",
    "orthogonal": "the orthogonal init",
}


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refuse_field(key: str, value: object, source: str) -> LoralabError:
    """The one-line error for PEFT field ``key`` set to ``value`` (not its "off" value)."""
    what = FIELD_VARIANTS.get(key)
    if what is None:
        return LoralabError(f"{source}: {key}={_short(value)} is not supported by loralab "
                            "(this PEFT feature is not implemented)")
    return LoralabError(f"{source}: {key}={_short(value)} is not supported by loralab: "
                        f"{what} is not implemented; leave {key} unset")
