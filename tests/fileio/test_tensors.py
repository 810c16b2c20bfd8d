"""``checked_cast``: a tensor is checked in the dtype it will be used in, after the cast."""

from __future__ import annotations

import pytest
import torch

from loralab.errors import LoralabError
from loralab.fileio.tensors import checked_cast


def test_a_value_that_overflows_in_the_target_dtype_is_refused():
    t = torch.tensor([[1.0, 1e300]], dtype=torch.float64)
    with pytest.raises(LoralabError, match=r"overflow: m has entries up to 1e\+300 \(float64\), "
                       r"beyond the float32 range.*use float64"):
        checked_cast(t, torch.float32, "m", "use float64")
    assert torch.equal(checked_cast(t, torch.float64, "m"), t)     # fine where it fits


def test_a_non_zero_value_that_would_become_zero_is_refused():
    t = torch.tensor([[0.0, 1e-300]], dtype=torch.float64)
    with pytest.raises(LoralabError, match=r"underflow: m has 1 non-zero entries .* below the "
                       "float32 range: they would become 0"):
        checked_cast(t, torch.float32, "m")
    assert checked_cast(torch.zeros(2, 2, dtype=torch.float64), torch.float32, "m").dtype \
        == torch.float32                                             # true zeros stay zeros


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_is_read_exactly_through_float32(dtype):
    t = torch.tensor([0.5, -2.0, 0.0]).to(dtype)
    out = checked_cast(t, torch.float32, "m")
    assert out.dtype == torch.float32 and out.tolist() == [0.5, -2.0, 0.0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_in_the_file_are_refused(bad):
    with pytest.raises(LoralabError, match="1 NaN/Inf entries"):
        checked_cast(torch.tensor([1.0, bad]), torch.float64, "m")
