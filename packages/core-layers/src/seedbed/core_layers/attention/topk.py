"""Top-k sparse attention (seed 002, C-5): each query attends only its k highest-scoring keys.

An inference-time approximation of full attention: scores are computed in full, the
``k_top`` largest per query are kept and renormalised, the rest get zero weight. With
``k_top == S_k`` (and no masked key) it equals full attention.
"""

from __future__ import annotations

import torch

from seedbed.core_layers._checks import check_positive_int
from seedbed.core_layers.attention.functional import _check_options, check_qkv
from seedbed.core_layers.attention.masks import band_mask
from seedbed.core_layers.attention.math import repeat_kv, safe_softmax

__all__ = ["topk_sparse_attention"]


def topk_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_top: int,
    *,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention restricted to the ``k_top`` best keys of each query.

    Args:
        q: (B, S_q, H, D); k: (B, S_k, H_kv, D); v: (B, S_k, H_kv, D_v).
        k_top: keys kept per query, 1 <= k_top <= S_k.
        causal: bottom-right aligned causal mask, applied before the selection (a query
            with fewer than k_top visible keys uses only those).
        scale: score scale, default 1 / sqrt(D).

    Returns:
        (B, S_q, H, D_v), dtype of q.

    Raises:
        ValueError: if ``k_top > S_k`` (or < 1), naming both.
    """
    _, s_q, s_k, h, h_kv, d = check_qkv(q, k, v)
    _check_options(causal, None, None, scale, 0.0)
    check_positive_int(k_top, "k_top")
    if k_top > s_k:
        raise ValueError(f"k_top must be <= seq_k = {s_k}, got k_top = {k_top}")
    scale_f = float(scale) if scale is not None else d**-0.5
    cdtype = torch.promote_types(q.dtype, torch.float32)
    qh = q.transpose(1, 2).to(cdtype)  # (B, H, S_q, D)
    kh = repeat_kv(k.transpose(1, 2).to(cdtype), h // h_kv)  # (B, H, S_k, D)
    vh = repeat_kv(v.transpose(1, 2).to(cdtype), h // h_kv)  # (B, H, S_k, D_v)
    s = (qh @ kh.transpose(-2, -1)) * scale_f  # (B, H, S_q, S_k)
    band = band_mask(0, s_q, 0, s_k, shift=s_k - s_q, causal=causal, window=None, device=q.device)
    if band is not None:
        s = s.masked_fill(~band, float("-inf"))
    top, idx = s.topk(k_top, dim=-1)  # (B, H, S_q, k_top)
    p = torch.zeros_like(s).scatter(-1, idx, safe_softmax(top))  # (B, H, S_q, S_k), k_top nonzero
    return (p @ vh).transpose(1, 2).to(q.dtype)  # (B, S_q, H, D_v)
