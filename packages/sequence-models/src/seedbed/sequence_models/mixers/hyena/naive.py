"""Hyena long convolution, naive form: the causal convolution by its definition.

    y[..., t] = sum_{s=0}^{t} k[..., s] u[..., t-s]  (+ bias * u[..., t])

computed directly (a depthwise ``conv1d`` with the kernel flipped and L-1 zeros on the left,
or after the carried ``history``): O(L^2) per channel, the reference for the FFT form.
Layout channels-first: u (B, C, L), k (C, T + L) when a history of T inputs is given.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seedbed.sequence_models.mixers.hyena._checks import check_conv_inputs

__all__ = ["direct_causal_conv"]


def direct_causal_conv(
    u: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None = None,
    history: torch.Tensor | None = None,
) -> torch.Tensor:
    """Direct causal depthwise convolution with a kernel as long as the sequence.

    Args:
        u: (B, C, L) new inputs.
        k: (C, >= T + L) kernel taps by lag (``k[:, s]`` multiplies the input s steps back).
        bias: (C,) skip weight (``y += bias * u``), or None.
        history: (B, C, T) inputs before u (T may be 0), or None.

    Returns:
        (B, C, L) outputs for the positions of u (empty at L = 0).

    Raises:
        ValueError, TypeError: shapes (a kernel shorter than T + L included), dtypes or
            devices that do not fit.
    """
    check_conv_inputs("direct_causal_conv", u, k, bias, history)
    length = u.shape[-1]
    if length == 0:
        return u.new_empty(u.shape)
    full = u if history is None else torch.cat([history.to(u.dtype), u], dim=-1)  # (B, C, T+L)
    n = full.shape[-1]
    kk = k[:, :n].to(u.dtype).flip(-1).unsqueeze(1)  # (C, 1, T+L): conv1d cross-correlates
    y = F.conv1d(F.pad(full, (n - 1, 0)), kk, groups=u.shape[1])[..., n - length :]
    if bias is not None:
        y = y + u * bias.to(u.dtype)[:, None]
    return y
