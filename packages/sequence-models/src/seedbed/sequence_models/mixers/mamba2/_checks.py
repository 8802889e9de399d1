"""Input checks shared by the whole-sequence SSD forms (naive, chunked, recurrent)."""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_floating_on_one_device, check_shapes

__all__ = ["check_ssd_inputs"]


def check_ssd_inputs(
    fn: str,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None,
) -> None:
    """Raise a clear error unless x is (B, L, H, P), dt (B, L, H), A (H,), B and C (B, L, G, N)
    with H % G == 0, and initial_state None or (B, H, P, N), all floating tensors on one
    device. ``fn`` names the caller in the message.

    Raises:
        TypeError: an argument is not a floating tensor.
        ValueError: a shape does not fit the others, or the tensors are on several devices.
    """
    named = {"x": x, "dt": dt, "A": A, "B": B, "C": C, "initial_state": initial_state}
    args = check_floating_on_one_device(fn, named, optional=("initial_state",))
    if x.ndim != 4:
        raise ValueError(f"{fn}: x must be (B, L, H, P), got shape {tuple(x.shape)}")
    bsz, length, h, p = x.shape
    if B.ndim != 4 or B.shape[2] < 1 or h % B.shape[2]:
        raise ValueError(
            f"{fn}: B must be (B, L, G, N) with H={h} divisible by G, got {tuple(B.shape)}"
        )
    n = B.shape[3]
    want = {"dt": (bsz, length, h), "A": (h,), "B": (bsz, length, B.shape[2], n),
            "C": (bsz, length, B.shape[2], n), "initial_state": (bsz, h, p, n)}  # fmt: skip
    check_shapes(fn, args, want)
