"""Hyena long convolution, parallel form: causal convolution by FFT, O(L log L).

Zero-padding to length 2N (N = history + new inputs) turns the FFT's circular convolution
into the linear one, so the first N outputs are exactly the causal convolution. With a
carried ``history`` (streaming), the convolution runs over history + chunk and the chunk's
outputs are returned.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import compute_dtype
from seedbed.sequence_models.mixers.hyena._checks import check_conv_inputs

__all__ = ["fft_causal_conv"]


def fft_causal_conv(
    u: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None = None,
    history: torch.Tensor | None = None,
) -> torch.Tensor:
    """FFT causal depthwise convolution. Same arguments, result and errors as
    :func:`direct_causal_conv`."""
    check_conv_inputs("fft_causal_conv", u, k, bias, history)
    length = u.shape[-1]
    if length == 0:
        return u.new_empty(u.shape)
    dtype = compute_dtype(u.dtype)
    full = u if history is None else torch.cat([history.to(u.dtype), u], dim=-1)  # (B, C, N)
    n = full.shape[-1]
    fft_n = 2 * n
    u_f = torch.fft.rfft(full.to(dtype), n=fft_n)  # (B, C, N+1) complex
    k_f = torch.fft.rfft(k[:, :n].to(dtype), n=fft_n)  # (C, N+1)
    y = torch.fft.irfft(u_f * k_f, n=fft_n)[..., n - length : n].to(u.dtype)  # (B, C, L)
    if bias is not None:
        y = y + u * bias.to(u.dtype)[:, None]
    return y
