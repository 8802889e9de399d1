"""Input checks shared by the whole-sequence retention forms (naive, chunked, recurrent)."""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_floating_on_one_device, check_shapes

__all__ = ["check_retention_inputs"]


def check_retention_inputs(
    fn: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None,
) -> None:
    """Raise a clear error unless q and k are (B, L, H, D_k), v is (B, L, H, D_v) and
    initial_state is None or (B, H, D_k, D_v), all floating tensors on one device. ``fn``
    names the caller in the message.

    Raises:
        TypeError: an argument is not a floating tensor.
        ValueError: a shape does not fit the others, or the tensors are on several devices.
    """
    named = {"q": q, "k": k, "v": v, "initial_state": initial_state}
    args = check_floating_on_one_device(fn, named, optional=("initial_state",))
    if q.ndim != 4:
        raise ValueError(f"{fn}: q must be (B, L, H, D_k), got shape {tuple(q.shape)}")
    if v.ndim != 4:
        raise ValueError(f"{fn}: v must be (B, L, H, D_v), got shape {tuple(v.shape)}")
    bsz, length, h, dk = q.shape
    dv = v.shape[-1]
    want = {"k": (bsz, length, h, dk), "v": (bsz, length, h, dv), "initial_state": (bsz, h, dk, dv)}
    check_shapes(fn, args, want)
