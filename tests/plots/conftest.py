"""Tiny inputs for the figures, and what a drawn figure holds.

The fine-tuning figures read an :class:`~loralab.experiment.ExperimentResult`; here it is
rebuilt by :func:`~loralab.experiment.result_from_dict` from a hand-written ``results.json``
(whose schema is fixed), so no model is trained: full fine-tuning, LoRA at ranks 2 and 8 on
one or two target sets, rsLoRA and DoRA at rank 8.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

STEPS = [10, 20, 30]
BASE_LOSS = 3.0


def _run(label: str, method: str, rank: int | None, targets: str, final: float,
         params: int, step_time: float, *, rslora: bool = False) -> dict[str, Any]:
    """One ``runs`` entry: val loss falling from the base's to ``final``."""
    return {
        "label": label, "method": method, "rank": rank, "targets": targets,
        "modules": ["q_proj", "v_proj"], "rslora": rslora,
        "scaling": None if rank is None else (16.0 / rank ** 0.5 if rslora else 16.0 / rank),
        "trainable_params": params, "total_params": 10_000, "final_val_loss": final,
        "step_time_s": step_time, "tokens_per_s": 1e4, "flops_per_s": 1e9, "mfu": 0.1,
        "optimizer_state_bytes": 8 * params, "peak_memory_bytes": 1 << 20,
        "peak_memory_kind": "rss", "wall_s": 1.0, "val_steps": list(STEPS),
        "val_loss": [2.0, 1.5, final], "train_loss": [2.1, 1.6, final + 0.05],
        "resumed_from": None, "initial_val_loss": BASE_LOSS, "steps_to_full_loss": None,
        "base_weight_bytes": 0, "direction_trace": [],
        "trainable_percent": 100.0 * params / 10_000,
    }


def _targets(label: str) -> dict[str, Any]:
    return {"lora_label": label, "full_val_loss": 1.0, "lora_val_loss": 1.02,
            "val_gap_percent": 2.0, "step_time_ratio": 0.6, "optimizer_state_ratio": 25.0,
            "base_val_loss": BASE_LOSS, "base_over_full": 3.0, "base_over_lora": 2.9,
            "met": {"val_gap": True}}


def results_json(targets: tuple[str, ...] = ("attn",), *, rslora: bool = True,
                 methods: tuple[str, ...] = ("full", "lora", "rslora", "dora"),
                 full: bool = True) -> dict[str, Any]:
    """A ``results.json`` as ``loralab finetune --out`` writes it, for ranks 2 and 8 (and
    full fine-tuning unless ``full=False``)."""
    runs = [_run("full", "full", None, "all", 1.0, 10_000, 0.010)] if full else []
    for t in targets:
        runs += [_run(f"lora-r2-{t}", "lora", 2, t, 1.30, 128, 0.006),
                 _run(f"lora-r8-{t}", "lora", 8, t, 1.10, 512, 0.007)]
    last = targets[-1]
    if "rslora" in methods:
        runs.append(_run(f"rslora-r8-{last}", "rslora", 8, last, 1.05, 512, 0.007, rslora=True))
    if "dora" in methods:
        runs.append(_run(f"dora-r8-{last}", "dora", 8, last, 1.08, 528, 0.009))
    spectra = [{"name": f"blocks.{i}.attn.{m}", "module": m, "layer": i, "shape": [16, 16],
                "delta_norm": 1.0, "relative_norm": 0.1, "rank90": 3 + i,
                "singular_values": [2.0 ** -k for k in range(16)]}
               for i in range(2) for m in ("q_proj", "v_proj")]
    truncation = [{"targets": t, "rank": r, "val_loss_truncated": 1.0 + 0.1 / (r or 1),
                   "energy_kept": 1 - 0.5 / (r or 1) if r else 1.0,
                   "val_loss_lora": None if r is None else 1.0 + 0.2 / r}
                  for t in targets for r in (2, 8, None)]
    rs_rows = ([{"rank": 8, "targets": last, "scaling_alpha_over_r": 2.0,
                 "scaling_alpha_over_sqrt_r": 16.0 / 8 ** 0.5, "val_loss_alpha_over_r": 1.10,
                 "val_loss_alpha_over_sqrt_r": 1.05}] if "rslora" in methods and rslora
               else [])
    points = [{"method": m, "label": m, "step": s, "layer": f"blocks.{i}.attn.q_proj",
               "delta_m": 0.01 * s * (i + 1), "delta_d": 0.001 * s * (2 - i) + 1e-4 * k}
              for k, m in enumerate(("full", "lora", "dora")) for s in STEPS for i in range(2)]
    return {
        "config": {"preset": "quick", "methods": list(methods), "ranks": [2, 8],
                   "targets": list(targets), "seed": 0, "device": "cpu", "bf16": False,
                   "lora_alpha": 16.0, "rslora_ranks": [8] if rslora else [], "data": None,
                   "model": None, "revision": None, "steps": None, "batch": None,
                   "fsdp": False, "grad_checkpointing": False, "jobs": 1, "threads": 1},
        "device": "cpu", "world_size": 1, "base_val_loss": BASE_LOSS,
        "base": {"key": "k", "path": "p", "cached": True, "params": 10_000,
                 "pretrain_val_loss": 1.5, "finetune_val_loss": BASE_LOSS,
                 "pretrain_wall_s": 1.0, "pretrain_history": {}, "sha256": ""},
        "runs": runs,
        "merge_checks": [], "spectra": spectra, "truncation": truncation,
        "amplification": None, "rslora": rs_rows, "samples": [],
        "pig_latin_word_rate": {}, "targets": _targets(f"lora-r8-{last}"),
        "targets_by_set": [_targets(f"lora-r8-{t}") for t in targets],
        "magnitude_direction": {
            "module": "q_proj", "rank": 8, "targets": last, "points": points,
            "correlation": {"full": -0.5, "lora": 0.5, "dora": -0.25},
            "reproduced": {"full": True, "lora": True, "dora": False}, "within_step": {}},
        "wall_s": 3.0, "data": {}, "memory_estimates": [],
    }


@pytest.fixture
def make_result():
    """``make_result(targets=..., rslora=..., methods=..., full=...)``: an ExperimentResult."""
    from loralab.experiment import result_from_dict

    def make(**kw: Any) -> Any:
        return result_from_dict(copy.deepcopy(results_json(**kw)))

    return make


@pytest.fixture
def result(make_result):
    return make_result()


# What a figure holds ------------------------------------------------------------------------

def line_labels(ax: Any) -> list[str]:
    """Labels of the lines of ``ax`` that have one (matplotlib's ``_child…`` are none)."""
    return [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def legend_texts(ax: Any) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def all_texts(fig: Any) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def is_png(data: bytes) -> bool:
    return data[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def no_missing_glyphs() -> Iterator[list[str]]:
    """Fails the test if drawing warned of a glyph missing from the fonts."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield []
    missing = [str(w.message) for w in seen if "missing from" in str(w.message)]
    assert not missing, missing[:3]
