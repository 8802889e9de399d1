"""Input checks shared by the whole-sequence long-convolution forms (direct, FFT, recurrent)."""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_floating_on_one_device, check_shapes

__all__ = ["check_conv_inputs"]


def check_conv_inputs(
    fn: str,
    u: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None,
    history: torch.Tensor | None,
) -> None:
    """Raise a clear error unless u is (B, C, L), history None or (B, C, T), k (C, K) with at
    least T + L taps, and bias None or (C,), all floating tensors on one device. ``fn``
    names the caller in the message.

    Raises:
        TypeError: an argument is not a floating tensor.
        ValueError: a shape does not fit the others, the kernel is too short, or the tensors
            are on several devices.
    """
    args = check_floating_on_one_device(
        fn, {"u": u, "k": k, "bias": bias, "history": history}, optional=("bias", "history")
    )
    if u.ndim != 3:
        raise ValueError(f"{fn}: u must be (B, C, L), got shape {tuple(u.shape)}")
    bsz, channels, length = u.shape
    if history is not None and (history.ndim != 3 or history.shape[:2] != (bsz, channels)):
        raise ValueError(
            f"{fn}: history must be (B={bsz}, C={channels}, T), got {tuple(history.shape)}"
        )
    taps = length + (0 if history is None else history.shape[-1])
    if k.ndim != 2 or k.shape[0] != channels or k.shape[1] < taps:
        raise ValueError(
            f"{fn}: k must be (C={channels}, >= T + L = {taps}) taps, got {tuple(k.shape)}"
        )
    check_shapes(fn, args, {"bias": (channels,)})
