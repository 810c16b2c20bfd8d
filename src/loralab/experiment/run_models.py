"""The runs' trained models, kept for the analysis and the outputs within a memory budget.

The analysis (spectra, truncation, intruder dimensions, the λ sweep, samples) and the saved
adapters read every run's trained model. Kept whole, a study of 28 runs of a 135 M-parameter
model holds 28 copies of its 540 MB of weights (an lr study on SmolLM2 reached 18.8 GB and was
killed). An adapter run's model is its base, rebuilt the same way every time
(:func:`~.methods.build_run_model`: the same copy, quantization and seeded init), plus its
trained tensors; so when the runs' models would pass :data:`HOLD_BYTES`, an adapter run keeps
only its trained tensors and its model is rebuilt on access, bit for bit the model it trained
(the last one rebuilt is kept, for the analysis's run-by-run reads). Full fine-tuning trains
every weight: its model is always kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from .config import ExperimentConfig, RunSpec
from .methods import build_run_model

__all__ = ["HOLD_BYTES", "ConvertedModels", "RunModels"]

HOLD_BYTES = 2 * 1024**3      # every model kept whole while the runs' models fit in 2 GiB


def _bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size()
               for t in (*model.parameters(), *model.buffers()))


class RunModels(Mapping[str, nn.Module]):
    """``{run label: trained model}`` for ``runs`` on ``base`` (eval mode). ``add`` each run's
    model as it finishes; with ``n_runs × bytes(base) > hold_bytes`` (default
    :data:`HOLD_BYTES`) an adapter run's model is dropped for its trained tensors and rebuilt
    when read."""

    def __init__(self, base: nn.Module, config: ExperimentConfig, n_runs: int,
                 hold_bytes: int | None = None) -> None:
        self._base, self._config = base, config
        budget = HOLD_BYTES if hold_bytes is None else hold_bytes
        self._lazy = n_runs * _bytes(base) > budget
        self._held: dict[str, nn.Module] = {}
        self._tensors: dict[str, tuple[RunSpec, dict[str, torch.Tensor]]] = {}
        self._order: list[str] = []
        self._last: tuple[str, nn.Module] | None = None

    @property
    def lazy(self) -> bool:
        """Whether adapter runs are rebuilt on access instead of kept."""
        return self._lazy

    def add(self, run: RunSpec, model: nn.Module) -> None:
        """Keep ``run``'s trained ``model`` (or, lazily, its trained tensors)."""
        self._order.append(run.label)
        if not (self._lazy and run.method_spec.is_adapter):
            self._held[run.label] = model.eval()
            return
        self._tensors[run.label] = (run, {n: p.detach() for n, p in model.named_parameters()
                                          if p.requires_grad})
        self._last = (run.label, model.eval())

    def __getitem__(self, label: str) -> nn.Module:
        if label in self._held:
            return self._held[label]
        if self._last is not None and self._last[0] == label:
            return self._last[1]
        run, tensors = self._tensors[label]
        self._last = None                                # one rebuilt model at a time
        model = build_run_model(self._base, run, self._config)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in tensors.items():
                params[n].copy_(t)
        self._last = (label, model.eval())
        return model

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)


class ConvertedModels(Mapping[str, nn.Module]):
    """``models`` seen through ``convert(label, model)`` on each read (e.g. a PiSSA run as a
    plain LoRA for saving), so a lazy :class:`RunModels` stays lazy."""

    def __init__(self, models: Mapping[str, nn.Module],
                 convert: Callable[[str, nn.Module], nn.Module]) -> None:
        self._models, self._convert = models, convert

    def __getitem__(self, label: str) -> nn.Module:
        return self._convert(label, self._models[label])

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)
