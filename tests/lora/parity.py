"""The parity table of the PEFT comparisons: each test states (case, direction, max |Δ|).

With ``LORALAB_PARITY=<file>`` set, every :func:`check` appends one JSON line to that file, so
``LORALAB_PARITY=/tmp/p.jsonl pytest tests/lora/test_param.py`` collects the table;
without it nothing is written. The assertion is the same either way; ``python
tests/lora/parity.py <file>`` prints the table."""

from __future__ import annotations

import json
import os

import torch


def tolerance(reference: torch.Tensor, rel: float = 1e-5) -> float:
    """An absolute tolerance scaled to the outputs' size: ``rel · max(1, max |y|)``."""
    return rel * max(1.0, float(reference.detach().abs().max()))


def check(case: str, direction: str, got: torch.Tensor, want: torch.Tensor,
          rel: float = 1e-5) -> float:
    """Assert ``got ≈ want`` (tolerance above) and record the row; returns max |got − want|."""
    diff = float((got.detach().double() - want.detach().double()).abs().max())
    path = os.environ.get("LORALAB_PARITY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"case": case, "direction": direction, "max_diff": diff}) + "\n")
    assert diff <= tolerance(want, rel), f"{case} {direction}: max |Δ| = {diff:.3g}"
    return diff


def table(path: str) -> str:
    """The rows of ``path`` as a markdown table (case, direction, max |Δ|), the largest
    difference of each (case, direction) pair."""
    worst: dict[tuple[str, str], float] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            key = (row["case"], row["direction"])
            worst[key] = max(worst.get(key, 0.0), row["max_diff"])
    lines = ["| case | direction | max abs diff |", "|---|---|---|"]
    lines += [f"| {c} | {d} | {v:.2e} |" for (c, d), v in worst.items()]
    return "\n".join(lines)


if __name__ == "__main__":   # python tests/lora/parity.py /tmp/p.jsonl
    import sys

    print(table(sys.argv[1]))
