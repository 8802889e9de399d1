"""Input checks shared by the whole-sequence selective-scan forms (naive, chunked, recurrent, fused)."""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_floating_on_one_device, check_shapes

__all__ = ["check_scan_inputs"]


def check_scan_inputs(
    fn: str,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None,
) -> None:
    """Raise a clear error unless u, delta are (B, L, E), A is (E, N), B, C are (B, L, N) and
    initial_state is None or (B, E, N), all floating tensors on one device. ``fn`` names the
    caller in the message.

    Raises:
        TypeError: an argument is not a floating tensor.
        ValueError: a shape does not fit the others, or the tensors are on several devices.
    """
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "initial_state": initial_state}
    args = check_floating_on_one_device(fn, named, optional=("initial_state",))
    if u.ndim != 3:
        raise ValueError(f"{fn}: u must be (B, L, E), got shape {tuple(u.shape)}")
    bsz, length, e = u.shape
    if A.ndim != 2 or A.shape[0] != e:
        raise ValueError(f"{fn}: A must be (E={e}, N), got {tuple(A.shape)}")
    n = A.shape[1]
    want = {"delta": (bsz, length, e), "B": (bsz, length, n), "C": (bsz, length, n),
            "initial_state": (bsz, e, n)}  # fmt: skip
    check_shapes(fn, args, want)
