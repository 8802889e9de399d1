"""Retention (RetNet, Sun et al. 2023), naive parallel form.

For head h with decay ``gamma_h = 1 - 2^(-5-h)``:

    o_i = scale * sum_{j<=i} gamma^(i-j) (q_i . k_j) v_j  +  scale * gamma^(i+1) q_i S_0

i.e. ``O = (scale Q K^T ⊙ D) V`` with the decay mask ``D[i, j] = gamma^(i-j) [i >= j]``,
materialised in O(L^2): the reference. ``S`` is the (D_k, D_v) state
``S_t = gamma S_{t-1} + k_t^T v_t``, shared by the three forms. Layout (B, L, H, D), as in
flash-linear-attention's ``head_first=False`` ops.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import compute_dtype
from seedbed.sequence_models.mixers.retnet._checks import check_retention_inputs

__all__ = ["naive_retention", "retention_log_decay"]


def retention_log_decay(n_heads: int, *, device=None, dtype=torch.float32) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """log(gamma_h) = log(1 - 2^(-5-h)) for h = 0..H-1, shape (H,)."""
    h = torch.arange(n_heads, device=device, dtype=torch.float64)
    return torch.log1p(-torch.pow(2.0, -5.0 - h)).to(dtype)


def naive_retention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Quadratic reference retention.

    Args:
        q, k: (B, L, H, D_k); v: (B, L, H, D_v).
        scale: query scale, default ``D_k ** -0.5``.
        initial_state: (B, H, D_k, D_v) or None (zeros).
        output_final_state: also return the state after the last token.

    Returns:
        o: (B, L, H, D_v) in v's dtype; final state (B, H, D_k, D_v) or None. At L = 0, an
        empty o and the initial state (zeros if None).

    Raises:
        ValueError, TypeError: shapes, dtypes or devices that do not fit.
    """
    check_retention_inputs("naive_retention", q, k, v, initial_state)
    dtype = compute_dtype(q.dtype)
    _bsz, length, n_heads, dk = q.shape
    scale = dk**-0.5 if scale is None else scale
    q, k, v32 = q.to(dtype) * scale, k.to(dtype), v.to(dtype)
    log_g = retention_log_decay(n_heads, device=q.device, dtype=dtype)  # (H,)
    t = torch.arange(length, device=q.device, dtype=dtype)
    diff = t[:, None] - t[None, :]  # (L, L): i - j
    mask = torch.exp(diff.clamp(min=0)[None] * log_g[:, None, None]) * (diff >= 0)  # (H, L, L)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) * mask  # (B, H, L, L)
    o = torch.einsum("bhij,bjhd->bihd", scores, v32)  # (B, L, H, D_v)
    if initial_state is not None:
        s0 = initial_state.to(dtype)
        decay_in = torch.exp((t[:, None] + 1) * log_g[None, :])  # (L, H): gamma^(i+1)
        o = o + torch.einsum("bihk,bhkv->bihv", q * decay_in[None, :, :, None], s0)
    final = None
    if output_final_state:
        decay_out = torch.exp((length - 1 - t)[:, None] * log_g[None, :])  # (L, H)
        final = torch.einsum("bjhk,bjhv->bhkv", k * decay_out[None, :, :, None], v32)
        if initial_state is not None:
            final = final + torch.exp(length * log_g)[None, :, None, None] * initial_state.to(dtype)
    return o.to(v.dtype), final
