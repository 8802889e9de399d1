"""Depthwise causal short convolution with a carried tail (Mamba, Mamba-2, Hyena)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["causal_depthwise_conv"]


def causal_depthwise_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tail: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal depthwise conv over time, continuing after ``tail``.

    Args:
        x: (B, C, L) channels-first input.
        weight: (C, 1, K) depthwise kernel (``nn.Conv1d(groups=C).weight``).
        bias: (C,) or None.
        tail: (B, C, K-1) the K-1 inputs before x[..., 0] (zeros at the start).

    Returns:
        y: (B, C, L); new tail: (B, C, K-1), the last K-1 inputs.
    """
    k = weight.shape[-1]
    xp = torch.cat([tail.to(x.dtype), x], dim=-1)  # (B, C, K-1+L)
    y = F.conv1d(
        xp, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), groups=x.shape[1]
    )
    return y, xp[..., xp.shape[-1] - (k - 1) :]
