import math
from itertools import pairwise

import pytest

from seedbed.core_layers.training import lr_multiplier


def test_warmup_then_cosine_to_floor():
    vals = [lr_multiplier(s, warmup_steps=4, max_steps=14, min_lr_ratio=0.1) for s in range(14)]
    assert vals[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert vals[4] == pytest.approx(1.0)
    assert vals[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in pairwise(vals[3:]))
    mid = lr_multiplier(9, warmup_steps=4, max_steps=14, min_lr_ratio=0.1)
    assert mid == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 9)))


def test_constant_and_bad_schedule():
    assert lr_multiplier(100, warmup_steps=2, max_steps=10, schedule="constant") == 1.0
    with pytest.raises(ValueError, match=r"schedule must be one of"):
        lr_multiplier(0, warmup_steps=0, max_steps=1, schedule="step")
