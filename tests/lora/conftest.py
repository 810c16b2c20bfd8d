"""Fixtures of the ``loralab.lora`` tests."""

from __future__ import annotations

import pytest
import torch
from lora_tiny import Tiny


@pytest.fixture
def model() -> Tiny:
    """A fresh two-block :class:`~lora_tiny.Tiny` (d = 8), seeded."""
    torch.manual_seed(0)
    return Tiny()
