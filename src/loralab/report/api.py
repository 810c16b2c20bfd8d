"""The report's table of loralab functions beyond the seed's three.

Each entry names a real object (a test checks that every one of them exists); what it does is
the catalogues' text ``api_d_<name>`` (names in lower case).
"""

from __future__ import annotations

from markupsafe import Markup

from .text import t

__all__ = ["API", "api_rows"]

# (module, name), in the table's order
API: tuple[tuple[str, str], ...] = (
    ("lowrank", "svd_sweep"), ("lowrank", "spectrum"), ("lowrank", "fit_lowrank"),
    ("lowrank", "subspace_similarity"), ("lora", "LoRALinear"), ("lora", "inject_lora"),
    ("lora", "merge_lora"), ("lora", "save_adapter"), ("lm", "TinyLM"),
    ("experiment", "run_experiment"),
)


def api_rows(lang: str) -> list[tuple[str, Markup]]:
    """``(qualified name, description)`` for each entry of :data:`API`."""
    return [(f"loralab.{mod}.{name}", t(f"api_d_{name.lower()}", lang)) for mod, name in API]
