"""loralab.heap: freed blocks are reused instead of faulting in fresh pages every round."""

from __future__ import annotations

import subprocess
import sys

import pytest

from loralab.heap import keep_freed_memory

# Ten 2 MB blocks allocated, touched and freed, five rounds: glibc trims the freed 20 MB
# from the heap top between rounds unless it is told to keep it.
_ROUNDS = """
import resource, sys
if sys.argv[1] == "keep":
    from loralab.heap import keep_freed_memory
    assert keep_freed_memory()
def rounds(n):
    for _ in range(n):
        blocks = [bytearray(2 << 20) for _ in range(10)]
        for b in blocks:
            b[::4096] = b"x" * len(b[::4096])
        del blocks
rounds(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(5)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True,
                         text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    default, kept = _faults("default"), _faults("keep")
    pages = 5 * 10 * (2 << 20) // 4096                  # what the rounds touch: 25,600 pages
    assert default > pages // 10                          # trimmed, faulted in again (5,631)
    assert kept < pages // 40 and 4 * kept < default      # reused (512 here: one block)


def test_keep_freed_memory_is_idempotent() -> None:
    assert keep_freed_memory() == keep_freed_memory()
