"""The experiment's plan, checked before any work: :func:`check_plan`.

What the experiment computes (:class:`ExperimentConfig`) and how it runs
(:class:`RunOptions`) are plain records in :mod:`loralab.results.finetune_config` (the
results carry them), importable here too. What needs the machine (an installed
bitsandbytes) or both records at once (``--fsdp`` against the methods) is checked here, by
:func:`loralab.experiment.run_experiment` first and by the CLI before it creates anything.
"""

from __future__ import annotations

from ..errors import LoralabError
from ..results.finetune_config import (
    ADAPTER_METHODS,
    DEFAULT_METHODS,
    LOFTQ_ITER,
    LORAPLUS_RATIO,
    METHOD_HELP,
    METHODS,
    QUANT_METHODS,
    ExperimentConfig,
    RunOptions,
    RunSpec,
    plan_runs,
    run_label,
)
from ..results.presets import parse_targets

__all__ = ["ADAPTER_METHODS", "DEFAULT_METHODS", "LOFTQ_ITER", "LORAPLUS_RATIO", "METHODS",
           "METHOD_HELP", "QUANT_METHODS", "ExperimentConfig", "RunOptions", "RunSpec",
           "check_plan", "parse_targets", "plan_runs", "run_label"]

FSDP_METHODS: frozenset[str] = frozenset({"full", "lora", "rslora"})   # what --fsdp shards


def check_plan(config: ExperimentConfig, options: RunOptions) -> None:
    """Refuse, before any work, a plan this machine cannot run: methods ``--fsdp`` does not
    shard, or QLoRA / LoftQ without bitsandbytes (one :class:`LoralabError` line each)."""
    other = sorted(set(config.methods) - FSDP_METHODS)
    if options.fsdp and other:
        raise LoralabError(f"methods {', '.join(other)} are not allowed with --fsdp; it "
                           "shards full, lora and rslora runs")
    quant = sorted(QUANT_METHODS & set(config.methods))
    if quant:
        from ..quant import QUANT_HINT, bnb

        try:
            bnb()
        except LoralabError:
            raise LoralabError(f"methods {', '.join(quant)} need bitsandbytes, which is not "
                               f"installed; {QUANT_HINT}") from None
