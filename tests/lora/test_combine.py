"""The tensor rules of ``add_weighted_adapter`` against PEFT's own ``merge_utils``.

Each rule runs on the same random tensors in both; DARE's masks come from torch's global
generator in PEFT and from a generator seeded the same in loralab, so equal results mean
equal masks drawn in the same order.
"""

from __future__ import annotations

import pytest
import torch

merge_utils = pytest.importorskip("peft.utils.merge_utils")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora.combine import TENSOR_MIXES, check_density, mix_tensors, prune_magnitude  # noqa: E402

PEFT = {"linear": lambda t, w, d, m: merge_utils.task_arithmetic(t, w),
        "ties": lambda t, w, d, m: merge_utils.ties(t, w, d, m),
        "dare_linear": lambda t, w, d, m: merge_utils.dare_linear(t, w, d),
        "dare_ties": lambda t, w, d, m: merge_utils.dare_ties(t, w, d, m),
        "magnitude_prune": lambda t, w, d, m: merge_utils.magnitude_prune(t, w, d)}


@pytest.mark.parametrize("sign", ["total", "frequency"])
@pytest.mark.parametrize("mix", TENSOR_MIXES)
def test_each_rule_equals_peft(mix: str, sign: str) -> None:
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(6, 5, generator=gen) for _ in range(3)]
    weights = torch.tensor([0.5, -1.2, 0.8])
    torch.manual_seed(7)
    want = PEFT[mix](tensors, weights, 0.4, sign)
    got = mix_tensors(mix, tensors, weights, density=0.4, majority_sign_method=sign,
                      generator=torch.Generator().manual_seed(7))
    assert torch.equal(got, want)


def test_magnitude_pruning_keeps_the_largest_share() -> None:
    t = torch.tensor([[0.1, -3.0, 0.2], [2.0, -0.05, 1.0]])
    assert torch.equal(prune_magnitude(t, 0.5), torch.tensor([[0.0, -3.0, 0.0],
                                                              [2.0, 0.0, 1.0]]))
    assert prune_magnitude(t, 1.0) is t


def test_ties_elects_one_sign_per_entry_and_averages_the_agreeing() -> None:
    a, b, c = torch.tensor([1.0, -4.0]), torch.tensor([3.0, 1.0]), torch.tensor([-1.0, 1.0])
    got = mix_tensors("ties", [a, b, c], torch.ones(3), density=1.0)
    # entry 0: sum +3 → sign +, agreeing 1 and 3 → mean 2; entry 1: sum -2 → only -4 agrees
    assert torch.equal(got, torch.tensor([2.0, -4.0]))
    freq = mix_tensors("ties", [a, b, c], torch.ones(3), density=1.0,
                       majority_sign_method="frequency")
    assert torch.equal(freq, torch.tensor([2.0, 1.0]))   # entry 1: two of three are +


@pytest.mark.parametrize("bad", [0, -0.1, 1.01, None, True, "half"])
def test_density_outside_zero_one_is_refused(bad: object) -> None:
    with pytest.raises(LoralabError, match=rf"density={bad!r} is not allowed with combination "
                                           "'ties'; give the share of entries kept"):
        check_density(bad, "ties")
