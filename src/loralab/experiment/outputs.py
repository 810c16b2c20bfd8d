"""Every file of the fine-tuning experiment, written into a folder atomically::

    results.md, results.json, samples.txt,
    convergence.png, bridge.png, cost.png,
    adapters/<run>/adapter_config.json + adapter_model.safetensors   (PEFT format)

The driver writes them into a staging folder inside ``--out`` and moves them into place with
:meth:`loralab.fileio.OutputFolder.commit`, which records them in the folder's manifest.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..fileio import atomic_write_json, atomic_write_text
from ..lora import save_adapter
from ..plots import save_png
from ..plots.finetune import bridge_figure, convergence_figure, cost_figure
from .results import ExperimentResult
from .tables import format_samples, format_tables

__all__ = ["write_outputs"]


def write_outputs(result: ExperimentResult, models: dict[str, nn.Module], out: Path) -> None:
    """Write tables, JSON, samples, figures and every LoRA adapter into ``out``."""
    (out / "adapters").mkdir(exist_ok=True)
    for label, model in models.items():
        if label != "full":
            save_adapter(model, out / "adapters" / label)
    save_png(convergence_figure(result), out / "convergence.png")
    save_png(bridge_figure(result), out / "bridge.png")
    save_png(cost_figure(result), out / "cost.png")
    atomic_write_text(out / "results.md", format_tables(result, markdown=True) + "\n\n```\n"
                      + format_samples(result) + "\n```\n")
    atomic_write_text(out / "samples.txt", format_samples(result) + "\n")
    atomic_write_json(out / "results.json", result.to_dict())
