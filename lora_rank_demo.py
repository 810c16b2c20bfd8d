"""lora_rank_demo.py: the seed's teaching script, backed by the loralab package.

    python lora_rank_demo.py            # table, lora_rank_error.png, pseudo code
    python lora_rank_demo.py --help     # the same flags as `loralab demo`

Importable from the repository root, with the seed's names::

    from lora_rank_demo import LoraConfig, simulate_lora, pseudo_code
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import loralab  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from loralab.demo import LoraConfig, pseudo_code, simulate_lora  # noqa: E402

__all__ = ["LoraConfig", "pseudo_code", "simulate_lora"]

if __name__ == "__main__":
    from loralab.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
