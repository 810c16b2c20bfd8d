"""loralab.peak: the matmul peak is a real, positive rate, measured once per key and cached.

No timing assertion: the value depends on the machine and its load; only its kind is checked
(positive, finite, stable while cached, one cache entry per thread count).
"""

from __future__ import annotations

import math

import pytest
import torch

from loralab.errors import LoralabError
from loralab.peak import PeakKey, default_n, measure_matmul_peak, peak_cache
from loralab.threads import torch_threads


def test_peak_is_a_positive_finite_rate():
    flops = measure_matmul_peak(n=64, repeats=2)
    assert math.isfinite(flops) and flops > 0


def test_peak_is_cached_until_refreshed():
    first = measure_matmul_peak(n=48, repeats=2)
    assert measure_matmul_peak(n=48, repeats=2) == first          # the same object, no rerun
    key = PeakKey(torch.get_num_threads(), "cpu", "float32", 48)
    assert peak_cache()[key] == first
    again = measure_matmul_peak(n=48, repeats=2, refresh=True)
    assert math.isfinite(again) and again > 0
    assert peak_cache()[key] == again


def test_peak_is_kept_per_thread_count_and_dtype():
    with torch_threads(1):
        one = measure_matmul_peak(n=32, repeats=1)
    with torch_threads(2):
        two = measure_matmul_peak(n=32, repeats=1)
    bf16 = measure_matmul_peak(n=32, repeats=1, dtype=torch.bfloat16)
    cache = peak_cache()
    assert cache[PeakKey(1, "cpu", "float32", 32)] == one
    assert cache[PeakKey(2, "cpu", "float32", 32)] == two
    assert cache[PeakKey(torch.get_num_threads(), "cpu", "bfloat16", 32)] == bf16


def test_peak_restores_nothing_it_should_not_touch():
    before = torch.get_num_threads()
    measure_matmul_peak(n=16, repeats=1)
    assert torch.get_num_threads() == before


def test_default_size_and_bad_arguments():
    assert default_n("cpu") == 1024 and default_n("cuda") == 8192
    for bad in ({"n": 0}, {"n": 2.5}, {"repeats": 0}, {"n": True}):
        with pytest.raises(LoralabError):
            measure_matmul_peak(**bad)


def test_the_default_side_is_chosen_once_and_keys_the_cache():
    flops = measure_matmul_peak(dtype=torch.bfloat16, repeats=1)       # n=None: auto side
    assert measure_matmul_peak(dtype=torch.bfloat16, repeats=1) == flops
    sides = [k.n for k, v in peak_cache().items()
             if v == flops and k.dtype == "bfloat16" and k.threads == torch.get_num_threads()]
    assert sides and all(256 <= n <= default_n("cpu") for n in sides)
