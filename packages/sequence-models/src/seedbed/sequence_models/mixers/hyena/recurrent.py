"""Hyena long convolution, cached decode form: one output per new token from the history.

Hyena's implicit filter is as long as the sequence and is not a finite-order linear
recurrence, so there is no constant-size state: decoding keeps the past inputs of each long
convolution (a cache, like attention's KV cache) and computes the new output as a dot
product with the filter taps, O(T) per token at context T.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers.hyena._checks import check_conv_inputs

__all__ = ["cached_conv_step", "recurrent_causal_conv"]


def cached_conv_step(
    u: torch.Tensor, k: torch.Tensor, history: torch.Tensor, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token. u: (B, C); k: (C, >= T+1) taps by lag; history: (B, C, T).

    Returns (y (B, C), new history (B, C, T+1))."""
    history = torch.cat([history.to(u.dtype), u[..., None]], dim=-1)  # (B, C, T+1)
    n = history.shape[-1]
    y = (history * k[:, :n].to(u.dtype).flip(-1)).sum(-1)  # lag n-1 ... 0
    if bias is not None:
        y = y + u * bias.to(u.dtype)
    return y, history


def recurrent_causal_conv(
    u: torch.Tensor,
    k: torch.Tensor,
    bias: torch.Tensor | None = None,
    history: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token-by-token causal convolution. Same arguments, result and errors as
    :func:`direct_causal_conv`."""
    check_conv_inputs("recurrent_causal_conv", u, k, bias, history)
    if u.shape[-1] == 0:
        return u.new_empty(u.shape)
    hist = u.new_zeros(u.shape[0], u.shape[1], 0) if history is None else history
    ys = []
    for u_t in u.unbind(-1):
        y, hist = cached_conv_step(u_t, k, hist, bias)
        ys.append(y)
    return torch.stack(ys, dim=-1)
