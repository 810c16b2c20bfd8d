"""The experiment's plan, checked before any work: :func:`check_plan`.

What the experiment computes (:class:`ExperimentConfig`) and how it runs
(:class:`RunOptions`) are plain records in :mod:`loralab.results.finetune_config` (the
results carry them), importable here too. What needs the machine (an installed
bitsandbytes) or both records at once (``--fsdp`` against the methods, as each method's
record says: :data:`~loralab.method_specs.METHOD_SPECS`) is checked here, by
:func:`loralab.experiment.run_experiment` first and by the CLI before it creates anything.
"""

from __future__ import annotations

from ..errors import LoralabError
from ..method_specs import METHOD_SPECS
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

def check_plan(config: ExperimentConfig, options: RunOptions) -> None:
    """Refuse, before any work, a plan this machine cannot run: methods ``--fsdp`` does not
    shard, or methods whose record needs bitsandbytes (QLoRA, LoftQ) without it (one
    :class:`LoralabError` line each)."""
    other = sorted(m for m in config.methods if not METHOD_SPECS[m].fsdp)
    if options.fsdp and other:
        *most, last = [m for m, s in METHOD_SPECS.items() if s.fsdp]
        raise LoralabError(f"methods {', '.join(other)} are not allowed with --fsdp; it "
                           f"shards {', '.join(most)} and {last} runs")
    need_bnb = sorted(m for m in config.methods if "bitsandbytes" in METHOD_SPECS[m].needs)
    if need_bnb:
        from ..quantizer import QUANT_HINT, bnb

        try:
            bnb()
        except LoralabError:
            raise LoralabError(f"methods {', '.join(need_bnb)} need bitsandbytes, which is "
                               f"not installed; {QUANT_HINT}") from None
