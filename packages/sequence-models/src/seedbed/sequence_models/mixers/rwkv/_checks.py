"""Input checks shared by the whole-sequence WKV forms (naive, chunked, recurrent)."""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_floating_on_one_device, check_shapes

__all__ = ["check_wkv_inputs"]


def check_wkv_inputs(
    fn: str,
    w: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None,
) -> None:
    """Raise a clear error unless w and u are (D,), k and v are (B, L, D) and initial_state
    is None or (B, 3, D), all floating tensors on one device. ``fn`` names the caller in the
    message.

    Raises:
        TypeError: an argument is not a floating tensor.
        ValueError: a shape does not fit the others, or the tensors are on several devices.
    """
    named = {"k": k, "v": v, "w": w, "u": u, "initial_state": initial_state}
    args = check_floating_on_one_device(fn, named, optional=("initial_state",))
    if k.ndim != 3:
        raise ValueError(f"{fn}: k must be (B, L, D), got shape {tuple(k.shape)}")
    bsz, length, dim = k.shape
    want = {"v": (bsz, length, dim), "w": (dim,), "u": (dim,), "initial_state": (bsz, 3, dim)}
    check_shapes(fn, args, want)
