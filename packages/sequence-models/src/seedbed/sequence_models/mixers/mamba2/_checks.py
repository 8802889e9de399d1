"""Input checks of the SSD form that is called directly for training (chunked)."""

from __future__ import annotations

import torch

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
    args = {"x": x, "dt": dt, "A": A, "B": B, "C": C}
    if initial_state is not None:
        args["initial_state"] = initial_state
    for name, t in args.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{fn}: {name} must be a floating tensor, got {t!r:.60}")
        if t.device != x.device:
            raise ValueError(f"{fn}: {name} is on {t.device}, x on {x.device}")
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
    for name, shape in want.items():
        if name in args and tuple(args[name].shape) != shape:
            raise ValueError(f"{fn}: {name} must have shape {shape}, got {tuple(args[name].shape)}")
