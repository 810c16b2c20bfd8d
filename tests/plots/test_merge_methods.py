"""loralab.plots.merge_methods: bars of each combination's distance, heatmaps of one layer."""

from __future__ import annotations

import pytest
import torch

from loralab.lora.merge_error import MergeError, MergeErrors
from loralab.plots import png_bytes
from loralab.plots.merge_methods import MAPS, merge_methods_figure

from .conftest import is_png


@pytest.fixture
def errors() -> MergeErrors:
    rows = [MergeError("linear", 4, 0.7, 0.0), MergeError("cat", 8, 1e-12, 0.0),
            MergeError("svd", 4, 0.2, 0.0), MergeError("ties", 4, 0.8, 0.3)]
    exact = torch.arange(64.0).reshape(8, 8) - 32
    deltas = {r.combination: exact * (1 - r.relative) for r in rows}
    return MergeErrors(["a", "b"], [0.5, 0.5], 0.5, rows, "blocks.0.q", exact, deltas)


def test_bars_are_the_distances_and_maps_the_layer(errors: MergeErrors) -> None:
    fig = merge_methods_figure(errors)
    bars_ax = fig.axes[0]
    widths = [p.get_width() for p in bars_ax.patches]
    assert widths == pytest.approx([0.8, 0.2, 1e-9, 0.7])   # drawn bottom-up; cat at the floor
    assert [t.get_text() for t in bars_ax.get_yticklabels()] == [
        "ties (r=4)", "svd (r=4)", "cat (r=8)", "linear (r=4)"]
    titles = [ax.get_title() for ax in fig.axes[1:] if ax.get_images()]
    assert titles == ["exact Σ wᵢΔWᵢ"] + [c for c in MAPS if c in errors.layer_deltas]
    first = fig.axes[1].get_images()[0].get_array()
    assert first.tolist() == errors.exact.tolist()
    assert is_png(png_bytes(fig))
