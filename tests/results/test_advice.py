"""AdviceConfig's checks (loralab.results.advice): one clear error per bad value."""

from __future__ import annotations

import pytest

from loralab.errors import LoralabError
from loralab.results.advice import AdviceCheck, AdviceConfig


@pytest.mark.parametrize("kwargs, message", [
    ({"energy": 0.0}, "energy=0.0 is not allowed"),
    ({"energy": 1.0}, "energy=1.0 is not allowed"),
    ({"budget": 0}, "budget=0 is not allowed"),
    ({"budget": 1.5}, "budget=1.5 is not allowed"),
    ({"budget": 100, "energy": 0.5}, "not allowed together"),
    ({"probe": "svd"}, "probe"),
    ({"probe_steps": 0}, "probe_steps=0 is not allowed"),
    ({"preset": "huge"}, "preset"),
    ({"lora_alpha": 0.0}, "lora_alpha=0.0 is not allowed"),
    ({"targets": "+"}, "targets is empty"),
])
def test_bad_values_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(LoralabError, match=message):
        AdviceConfig(**kwargs)


def test_default_is_energy_90_and_the_check_compares() -> None:
    assert AdviceConfig().energy == 0.9 and AdviceConfig(budget=10).energy is None
    c = AdviceCheck(uniform_rank=4, uniform_params=100, advised_params=98,
                    uniform_val_loss=1.0, advised_val_loss=0.9, base_val_loss=3.0, steps=5)
    assert c.advice_wins and c.param_ratio == pytest.approx(0.98)
