"""How each method of the experiment builds its model and its optimizer groups.

:func:`build_run_model` gives a trainable copy of the base for one :class:`RunSpec`: every
weight (``full``), or an adapter of the method's kind on the run's targets with the base
frozen, as the method's record says (:data:`~loralab.method_specs.METHOD_SPECS`: its init,
scale rule, DoRA, quantized base); :func:`param_groups` gives LoRA+'s two learning rates.
Every method uses loralab's own LoRA (:mod:`loralab.lora`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..lm.train import TrainConfig
from ..method_specs import LOFTQ_ITER
from ..results.finetune_config import ExperimentConfig, RunSpec

__all__ = ["adapter_root", "build_run_model", "param_groups", "plain_adapter"]


def _conv1d(model: nn.Module, modules: tuple[str, ...]) -> bool:
    """Whether the targets are transformers' ``Conv1D`` (GPT-2), which stores Wᵀ."""
    from ..lora.targets import is_conv1d

    return any(is_conv1d(m) and n.rsplit(".", 1)[-1] in modules
               for n, m in model.named_modules())


def _adapter_config(run: RunSpec, config: ExperimentConfig, conv1d: bool = False) -> object:
    """The :class:`~loralab.lora.AdapterConfig` of an adapter run (its method's options);
    ``conv1d``: the targets store Wᵀ (``fan_in_fan_out``, as PEFT's config says for GPT-2)."""
    from ..lora import AdapterConfig

    spec = run.method_spec
    init: object = True if spec.init == "plain" else spec.init
    return AdapterConfig(
        r=run.rank, lora_alpha=config.lora_alpha, target_modules=list(run.modules),
        use_rslora=spec.rslora, use_dora=spec.dora, init_lora_weights=init,
        fan_in_fan_out=conv1d, rank_pattern=dict(run.rank_pattern),
        alpha_pattern=dict(run.alpha_pattern),
        loftq_config={"loftq_bits": spec.base_bits, "loftq_iter": LOFTQ_ITER}
        if spec.init == "loftq" else {})


def adapter_root(model: nn.Module) -> nn.Module:
    """Where LoRA goes: a transformers model inside loralab's wrapper (so adapters carry
    PEFT's module paths), else the model itself."""
    return getattr(model, "hf", model)


def build_run_model(base: nn.Module, run: RunSpec, config: ExperimentConfig) -> nn.Module:
    """A trainable copy of ``base`` for ``run``: all weights (full) or an adapter on its
    targets (the base frozen). ``qlora``: the base's linear layers quantized to NF4 first,
    then LoRA on them; ``loftq``: LoftQ's adapter on the float base (which becomes Q(W)),
    then the base quantized to NF4, which stores that Q(W) exactly."""
    from ..lora import inject_lora, prepare_model_for_kbit_training, quantize_model

    spec = run.method_spec
    model = copy.deepcopy(base)
    if not spec.is_adapter:
        model.requires_grad_(True)
        return model.train()
    if spec.quantize_first:
        quantize_model(model, bits=spec.base_bits)
    root = adapter_root(model)
    inject_lora(root, _adapter_config(run, config, _conv1d(root, run.modules)),
                generator=torch.Generator().manual_seed(config.seed))
    if spec.quantizes and not spec.quantize_first:
        quantize_model(model, bits=spec.base_bits)
    if spec.quantizes:
        prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model.train()


def param_groups(model: nn.Module, run: RunSpec, tc: TrainConfig) -> list[dict] | None:
    """LoRA+'s groups (B at the method's ``lr_ratio``× the learning rate) as ``lr_scale``s;
    else ``None`` (one group)."""
    ratio = run.method_spec.lr_ratio
    if ratio == 1.0:
        return None
    from ..lora import loraplus_param_groups

    groups = loraplus_param_groups(model, tc.lr, ratio)
    return [{"params": g["params"], "lr_scale": g["lr"] / tc.lr,
             "weight_decay": g["weight_decay"]} for g in groups if g["params"]]


@torch.no_grad()
def plain_adapter(base: nn.Module, run: RunSpec, config: ExperimentConfig,
                  trained: nn.Module) -> nn.Module:
    """A PiSSA or OLoRA run as a plain LoRA on the original base, the conversion PEFT's
    ``save_pretrained(path_initial_model_for_weight_conversion=...)`` makes.

    The run trained ``W_res + s·B A`` where ``W_res = W0 − s·B0 A0`` (``A0, B0`` its
    initial factors), so its update on ``W0`` is ``s·(B A − B0 A0)``, a rank-2r LoRA with
    ``A' = [A; A0]`` (2r, d_in), ``B' = [B, −B0]`` (d_out, 2r) and α' = 2α (the same α/r).
    Returns a copy of ``base`` with that adapter (other runs: ``trained`` itself); the
    adapter is saved from :func:`adapter_root` of what this returns.
    """
    from ..lora import AdapterConfig, inject_lora, lora_layers

    if not run.method_spec.residual_base:
        return trained
    start = lora_layers(build_run_model(base, run, config))
    model = copy.deepcopy(base)
    root = adapter_root(model)
    inject_lora(root, AdapterConfig(r=2 * run.rank, lora_alpha=2 * config.lora_alpha,
                                    target_modules=list(run.modules),
                                    fan_in_fan_out=_conv1d(root, run.modules)))
    for name, layer in lora_layers(model).items():
        a, b = lora_layers(trained)[name].factors()
        a0, b0 = start[name].factors()
        new_a, new_b = layer.factors()
        new_a.copy_(torch.cat([a, a0], dim=0))
        new_b.copy_(torch.cat([b, -b0], dim=1))
    return model
