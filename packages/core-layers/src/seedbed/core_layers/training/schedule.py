"""Learning-rate schedule: linear warm-up, then cosine decay (or constant)."""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "lr_multiplier"]

SCHEDULES = ("cosine", "constant")


def lr_multiplier(
    step: int,
    *,
    warmup_steps: int,
    max_steps: int,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.1,
) -> float:
    """Factor applied to the peak LR for the optimizer step with 0-based index ``step``.

    Warm-up: ``(step + 1) / warmup_steps`` for ``step < warmup_steps``. Then ``"constant"``
    stays at 1 and ``"cosine"`` falls from 1 to ``min_lr_ratio`` at ``max_steps - 1``.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, max_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
