"""Every file of the fine-tuning experiment, written into a folder atomically::

    results.md, results.json, samples.txt,
    convergence.png, bridge.png, cost.png (with a full run), methods.png (with methods
    beyond full, lora and rslora), magnitude_direction.png (with dora), lr_study.png or
    placement.png (a study's),
    adapters/<run>/adapter_config.json + adapter_model.safetensors   (PEFT format)
    adapters/loftq-*/loftq_base_weights.safetensors                  (LoftQ's Q weights)

The driver writes them into a staging folder inside ``--out`` and moves them into place with
:meth:`loralab.fileio.OutputFolder.commit`, which records them in the folder's manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import nn

from ..fileio import atomic_write, atomic_write_json, atomic_write_text
from ..lora import save_adapter
from ..method_specs import full_run, method_spec
from ..plots import save_png
from ..plots.finetune import bridge_figure, convergence_figure, cost_figure
from ..plots.forgetting import forgetting_figure, intruder_figure
from ..plots.methods import direction_figure, methods_figure
from ..plots.studies import lr_figure, placement_figure
from ..results.finetune import ExperimentResult
from ..results.finetune_config import DEFAULT_METHODS
from .methods import adapter_root
from .study_tables import study_lines
from .tables import format_samples, format_tables

__all__ = ["LOFTQ_BASE", "STUDY_FIGURES", "write_outputs"]

LOFTQ_BASE = "loftq_base_weights.safetensors"   # beside a LoftQ run's adapter
STUDY_FIGURES = {"lr": "lr_study.png", "placement": "placement.png"}   # a study's figure


def _save_loftq_base(model: nn.Module, path: Path) -> None:
    """LoftQ's base is not NF4(W0) but the Q its alternation ended with: save those weights
    (dequantized, ``{module path}.weight``), which NF4 stores exactly, for the adapter to go
    on (PEFT's LoftQ workflow saves that base too)."""
    from safetensors.torch import save

    from ..lora import lora_layers

    tensors = {f"{name}.weight": layer.read_weight().contiguous()
               for name, layer in lora_layers(model).items()}
    data = save(tensors)
    atomic_write(path, lambda fh: fh.write(data))


def write_outputs(result: ExperimentResult, models: Mapping[str, nn.Module], out: Path) -> None:
    """Write tables, JSON, samples, figures and every LoRA adapter into ``out``."""
    (out / "adapters").mkdir(exist_ok=True)
    specs = {r.label: method_spec(r.method) for r in result.runs}
    for label, model in models.items():
        if specs[label].is_adapter:
            save_adapter(adapter_root(model), out / "adapters" / label)
        if specs[label].init == "loftq":       # its adapter belongs to Q(W), saved beside it
            _save_loftq_base(model, out / "adapters" / label / LOFTQ_BASE)
    save_png(convergence_figure(result), out / "convergence.png")
    if full_run(result.runs) is not None and result.study is None:   # a study: its own
        save_png(bridge_figure(result), out / "bridge.png")
        save_png(cost_figure(result), out / "cost.png")
    if set(result.config.methods) - set(DEFAULT_METHODS):
        save_png(methods_figure(result), out / "methods.png")
    if result.study is not None:
        draw = lr_figure if result.study.name == "lr" else placement_figure
        save_png(draw(result.study), out / STUDY_FIGURES[result.study.name])
    md = result.analysis.magnitude_direction if result.analysis else None
    if md is not None:
        save_png(direction_figure(md), out / "magnitude_direction.png")
    a = result.analysis
    if a is not None and a.forgetting is not None:
        save_png(forgetting_figure(a.forgetting, a.intruders), out / "forgetting.png")
    if a is not None and a.intruders is not None:
        save_png(intruder_figure(a.intruders), out / "intruders.png")
    study = "\n".join(study_lines(result, "### ", markdown=True))    # a study's: first
    atomic_write_text(out / "results.md", (study + "\n\n" if study else "")
                      + format_tables(result, markdown=True) + "\n\n```\n"
                      + format_samples(result) + "\n```\n")
    atomic_write_text(out / "samples.txt", format_samples(result) + "\n")
    atomic_write_json(out / "results.json", result.to_dict())
