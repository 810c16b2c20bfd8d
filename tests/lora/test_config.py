"""AdapterConfig (loralab.lora.config): each value checked once, with a precise error."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import (  # noqa: E402
    AdapterConfig,
)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"r": 0}, "r=0"), ({"r": 2.5}, "r=2.5"), ({"r": True}, "r=True"),
    ({"lora_alpha": 0}, "lora_alpha=0"), ({"lora_alpha": float("nan")}, "lora_alpha=nan"),
    ({"lora_dropout": 1.0}, "lora_dropout=1.0"), ({"lora_dropout": -0.1}, "lora_dropout=-0.1"),
    ({"init_lora_weights": "eva"}, "init_lora_weights='eva'"),
    ({"init_lora_weights": "pissa_niter_0"}, "pissa_niter_0"),
    ({"bias": "some"}, "bias='some'"), ({"layers_to_transform": "0"}, "layers_to_transform"),
    ({"rank_pattern": {"q": 0}}, "rank_pattern"), ({"task_type": "CLS"}, "task_type='CLS'"),
    ({"use_rslora": 1}, "use_rslora=1"), ({"target_modules": None}, "target_modules=None"),
    ({"target_modules": []}, "target_modules=\\[\\]"), ({"target_modules": "("}, "regex"),
    ({"exclude_modules": "all-linear"}, "all-linear"), ({"target_modules": [""]}, "non-empty"),
])
def test_config_validation(kwargs: dict, match: str) -> None:
    args = {"target_modules": ["q_proj"], **kwargs}
    with pytest.raises(LoralabError, match=match):
        AdapterConfig(**args)
