"""Exact attention computed one block of queries at a time (memory-efficient attention).

For each block of ``chunk_size`` queries only the (B, H, chunk, S_k) scores of that block
exist, so peak memory is O(chunk * S_k) instead of O(S_q * S_k). Keys that no query of the
block can see (beyond the causal edge or before the sliding window) are skipped altogether.
When gradients are needed each block runs under activation checkpointing, so the backward
pass also keeps only one block's scores alive. The result equals
:func:`seedbed.core_layers.attention.math.math_attention` up to float rounding.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from seedbed.core_layers._checks import check_positive_int
from seedbed.core_layers.attention.functional import _check_options, check_qkv
from seedbed.core_layers.attention.masks import band_mask, check_attn_mask
from seedbed.core_layers.attention.math import repeat_kv, safe_softmax

__all__ = ["chunked_attention"]


def _slice_mask(m: torch.Tensor, i0: int, i1: int, lo: int, hi: int) -> torch.Tensor:
    """Rows [i0, i1) and columns [lo, hi) of a mask broadcastable to (B, H, S_q, S_k)."""
    if m.ndim >= 1 and m.shape[-1] != 1:
        m = m[..., lo:hi]
    if m.ndim >= 2 and m.shape[-2] != 1:
        m = m[..., i0:i1, :]
    return m


def _block(
    qc: torch.Tensor,
    kc: torch.Tensor,
    vc: torch.Tensor,
    allowed: torch.Tensor | None,
    additive: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    # qc: (B, H, C, D); kc, vc: (B, H, K, D); allowed: bool broadcastable to (B, H, C, K)
    s = (qc @ kc.transpose(-2, -1)) * scale  # (B, H, C, K)
    if additive is not None:
        s = s + additive
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    return safe_softmax(s) @ vc  # (B, H, C, D_v)


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    chunk_size: int = 512,
    causal: bool = False,
    attn_mask: torch.Tensor | None = None,
    scale: float | None = None,
    window: int | None = None,
) -> torch.Tensor:
    """Exact attention over blocks of ``chunk_size`` queries; same conventions as
    :func:`seedbed.core_layers.attention.functional.attention`.

    Args:
        q: (B, S_q, H, D); k: (B, S_k, H_kv, D); v: (B, S_k, H_kv, D_v).
        chunk_size: queries per block; peak score memory is B * H * chunk_size * S_k.
        causal, attn_mask, scale, window: as in ``attention()``.

    Returns:
        (B, S_q, H, D_v), dtype of q.
    """
    b, s_q, s_k, h, h_kv, d = check_qkv(q, k, v)
    _check_options(causal, window, None, scale, 0.0)
    check_positive_int(chunk_size, "chunk_size")
    if attn_mask is not None:
        attn_mask = check_attn_mask(attn_mask, b, h, s_q, s_k)
    scale_f = float(scale) if scale is not None else d**-0.5
    shift = s_k - s_q  # bottom-right alignment
    cdtype = torch.promote_types(q.dtype, torch.float32)
    qh = q.transpose(1, 2).to(cdtype)  # (B, H, S_q, D)
    kh = repeat_kv(k.transpose(1, 2).to(cdtype), h // h_kv)  # (B, H, S_k, D)
    vh = repeat_kv(v.transpose(1, 2).to(cdtype), h // h_kv)  # (B, H, S_k, D_v)
    use_ckpt = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))

    outs = []
    for i0 in range(0, s_q, chunk_size):
        i1 = min(i0 + chunk_size, s_q)
        lo, hi = 0, s_k  # keys some query of this block may see
        if causal:
            hi = max(0, min(s_k, i1 - 1 + shift + 1))
        if window is not None:
            lo = min(s_k, max(0, i0 + shift - window + 1))
        if hi <= lo:  # no query of this block sees any key
            outs.append(qh.new_zeros(b, h, i1 - i0, v.shape[-1]))
            continue
        allowed = band_mask(
            i0, i1 - i0, lo, hi - lo, shift=shift, causal=causal, window=window, device=q.device
        )
        additive = None
        if attn_mask is not None:
            m = _slice_mask(attn_mask, i0, i1, lo, hi)
            if m.dtype == torch.bool:
                allowed = m if allowed is None else m & allowed
            else:
                additive = m.to(cdtype)
        args = (qh[:, :, i0:i1], kh[:, :, lo:hi], vh[:, :, lo:hi], allowed, additive, scale_f)
        if use_ckpt:
            outs.append(checkpoint(_block, *args, use_reentrant=False))
        else:
            outs.append(_block(*args))
    return torch.cat(outs, dim=2).transpose(1, 2).to(q.dtype)  # (B, S_q, H, D_v)
