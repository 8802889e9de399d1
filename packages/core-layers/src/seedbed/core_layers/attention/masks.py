"""Which keys each query may see: causal (bottom-right aligned), sliding window, user masks.

Conventions shared by every attention form in this package:

* Query ``i`` of ``S_q`` and key ``j`` of ``S_k`` are aligned at the bottom right: the query's
  position on the key axis is ``i + S_k - S_q`` (so decoding one token against a cache of
  ``S_k`` keys sees all of them, as in FlashAttention-2 >= 2.1).
* ``causal``: key ``j`` is visible to query ``i`` only if ``j <= i + S_k - S_q``.
* ``window=w``: key ``j`` is visible only if ``(i + S_k - S_q) - j < w`` (a look-back limit;
  combine with ``causal=True`` for Mistral/Qwen2 sliding-window attention).
* ``attn_mask``: bool (True = attend) or floating (added to the scores), broadcastable to
  (B, H, S_q, S_k); a key-padding mask is ``pad[:, None, None, :]``.
* A query that sees no key at all outputs zeros (as FlashAttention and torch SDPA do).
"""

from __future__ import annotations

import torch

from seedbed.core_layers._checks import broadcastable, check_tensor

__all__ = ["band_mask", "check_attn_mask", "merge_masks"]


def band_mask(
    q_start: int,
    n_q: int,
    k_start: int,
    n_k: int,
    *,
    shift: int,
    causal: bool,
    window: int | None,
    device: torch.device,
) -> torch.Tensor | None:
    """Causal/window visibility for query rows ``[q_start, q_start + n_q)`` and key columns
    ``[k_start, k_start + n_k)``.

    Args:
        shift: ``S_k - S_q`` (bottom-right alignment).

    Returns:
        (n_q, n_k) bool, True = attend; None when neither causal nor window restricts.
    """
    if not causal and window is None:
        return None
    i = torch.arange(q_start, q_start + n_q, device=device)[:, None] + shift  # (n_q, 1)
    j = torch.arange(k_start, k_start + n_k, device=device)[None, :]  # (1, n_k)
    ok = torch.ones(n_q, n_k, dtype=torch.bool, device=device)
    if causal:
        ok &= j <= i
    if window is not None:
        ok &= (i - j) < window
    return ok


def check_attn_mask(attn_mask: object, batch: int, heads: int, s_q: int, s_k: int) -> torch.Tensor:
    """Validate a user mask: bool or floating, broadcastable to (B, H, S_q, S_k)."""
    m = check_tensor(attn_mask, "attn_mask", ndim=(0, 1, 2, 3, 4), floating=False)
    if m.dtype != torch.bool and not m.is_floating_point():
        raise TypeError(
            f"attn_mask must be bool (True = attend) or floating (additive), got {m.dtype}"
        )
    target = (batch, heads, s_q, s_k)
    if not broadcastable(m.shape, target):
        raise ValueError(
            f"attn_mask must be broadcastable to (B, H, S_q, S_k) = {target}, got shape {tuple(m.shape)}"
        )
    return m


def merge_masks(
    attn_mask: torch.Tensor | None, band: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """One mask for torch SDPA: bool when ``attn_mask`` is bool or absent, else additive.

    Args:
        attn_mask: user mask broadcastable to (B, H, n_q, n_k), or None.
        band: (n_q, n_k) bool from :func:`band_mask`, or None.
        dtype: dtype of an additive result (the query dtype).
    """
    if attn_mask is None:
        return band
    if attn_mask.dtype == torch.bool:
        return attn_mask if band is None else attn_mask & band
    m = attn_mask.to(dtype)
    return m if band is None else m.masked_fill(~band, float("-inf"))
