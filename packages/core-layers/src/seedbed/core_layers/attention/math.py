"""Reference attention: the explicit ``softmax(q k^T * scale + mask) v`` with GQA.

It materialises the full (B, H, S_q, S_k) score matrix, so it is the correctness reference and
the memory/speed baseline, not a production path. Low-precision inputs are computed in
float32 and cast back. Masking conventions: see :mod:`seedbed.core_layers.attention.masks`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from seedbed.core_layers.attention.masks import band_mask

__all__ = ["math_attention", "repeat_kv", "safe_softmax"]


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, H_kv, S, D) -> (B, H_kv * n_rep, S, D), each KV head repeated for its query group."""
    if n_rep == 1:
        return x
    b, h_kv, s, d = x.shape
    return x[:, :, None].expand(b, h_kv, n_rep, s, d).reshape(b, h_kv * n_rep, s, d)


def safe_softmax(s: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim that gives zeros (not NaN) for rows that are all ``-inf``.

    Gradients stay finite for such rows too.
    """
    m = s.detach().amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # all -inf row: shift by 0
    e = torch.exp(s - m)
    denom = e.sum(dim=-1, keepdim=True)
    return e / torch.where(denom > 0, denom, torch.ones_like(denom))


def math_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    attn_mask: torch.Tensor | None = None,
    window: int | None = None,
    softcap: float | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Explicit attention. Inputs are assumed valid (``attention()`` checks them).

    Args:
        q: (B, S_q, H, D); k: (B, S_k, H_kv, D); v: (B, S_k, H_kv, D_v), H % H_kv == 0.
        softcap: if set, scores become ``softcap * tanh(scores / softcap)`` before masking.

    Returns:
        (B, S_q, H, D_v), dtype of q.
    """
    _, s_q, h, d = q.shape
    s_k, h_kv = k.shape[1], k.shape[2]
    scale = d**-0.5 if scale is None else scale
    cdtype = torch.promote_types(q.dtype, torch.float32)
    qh = q.transpose(1, 2).to(cdtype)  # (B, H, S_q, D)
    kh = repeat_kv(k.transpose(1, 2).to(cdtype), h // h_kv)  # (B, H, S_k, D)
    vh = repeat_kv(v.transpose(1, 2).to(cdtype), h // h_kv)  # (B, H, S_k, D_v)
    s = (qh @ kh.transpose(-2, -1)) * scale  # (B, H, S_q, S_k)
    if softcap is not None:
        s = softcap * torch.tanh(s / softcap)
    if attn_mask is not None and attn_mask.dtype != torch.bool:
        s = s + attn_mask.to(cdtype)
    allowed = band_mask(
        0, s_q, 0, s_k, shift=s_k - s_q, causal=causal, window=window, device=q.device
    )
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        allowed = attn_mask if allowed is None else attn_mask & allowed
    if allowed is not None:
        s = s.masked_fill(~allowed, float("-inf"))
    p = safe_softmax(s)  # (B, H, S_q, S_k)
    if dropout_p > 0.0:
        p = F.dropout(p, p=dropout_p)
    return (p @ vh).transpose(1, 2).to(q.dtype)  # (B, S_q, H, D_v)
