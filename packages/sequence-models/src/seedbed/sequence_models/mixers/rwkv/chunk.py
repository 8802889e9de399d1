"""RWKV-4 WKV, chunkwise-parallel form: the training path.

The sequence is cut into chunks of C tokens. Inside a chunk the outputs are the quadratic
weighted averages of :mod:`.naive` (a (C, C) weight matrix per channel, all chunks at once);
across chunks only the (B, 3, D) state is carried, by a log-space scan over the L/C chunks
(``logcumsumexp`` in float64, no Python loop). Every exponent is shifted by a running maximum
before ``exp``, so nothing overflows. Chunk sizes need not divide L.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_chunk_size, compute_dtype, pad_to_chunks
from seedbed.sequence_models.mixers.rwkv.naive import empty_wkv_state

__all__ = ["chunk_wkv"]


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    """log(x) where x > 0, a huge negative number elsewhere (finite, so no NaN gradients)."""
    pos = x > 0
    return torch.where(
        pos, torch.log(torch.where(pos, x, torch.ones_like(x))), torch.full_like(x, -1e30)
    )


def chunk_wkv(
    w: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 8,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise WKV. Same arguments and results as :func:`naive_wkv`, plus ``chunk_size``."""
    check_chunk_size(chunk_size)
    dtype = compute_dtype(k.dtype)
    bsz, length, dim = k.shape
    c = min(chunk_size, length)
    kf, vf, w, u = k.to(dtype), v.to(dtype), w.to(dtype), u.to(dtype)
    kc, vc = pad_to_chunks(kf, c), pad_to_chunks(vf, c)  # (B, n, C, D)
    n = kc.shape[1]
    dev = k.device
    lengths = torch.full((n,), c, device=dev, dtype=dtype)
    lengths[-1] = length - (n - 1) * c
    pos = torch.arange(c, device=dev, dtype=dtype)  # (C,)
    valid = pos[None, :] < lengths[:, None]  # (n, C)
    neg_inf = torch.tensor(float("-inf"), device=dev, dtype=dtype)

    # 1. each chunk's own contribution to the state at its end (zero carried state):
    #    exponent k_s - (len - 1 - s) w, -inf past the chunk's end (the padded tail)
    dist = (lengths[:, None] - 1 - pos).clamp(min=0)  # (n, C)
    end_bias = torch.where(valid, 0.0, float("-inf")).to(dtype)  # (n, C)
    ll = kc - dist[None, :, :, None] * w + end_bias[None, :, :, None]  # (B, n, C, D)
    m_loc = ll.amax(dim=2).detach()  # (B, n, D)
    e = torch.exp(ll - m_loc[:, :, None, :])
    num_loc, den_loc = (e * vc).sum(2), e.sum(2)  # (B, n, D)

    # 2. carry the state across chunks: a log-space scan over the n chunks (float64, since
    #    its exponents grow like position * w). The true state after chunk j is
    #    e^{-P_j w} sum_{i<=j} e^{a_i} x_i with a_i = m_loc_i + P_i w (P_i: tokens up to the
    #    end of chunk i); item 0 is the carried-in state (P = 0). logcumsumexp sums it
    #    without overflow; signed numerators are split into positive and negative parts.
    state = (
        empty_wkv_state(bsz, dim, device=dev, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    f64 = torch.float64
    w64 = w.to(f64)
    ends = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)]).to(f64)  # (n+1,): P
    num0, den0, m0 = state.to(f64).unbind(1)  # (B, D) each
    a = torch.cat([m0[:, None], m_loc.to(f64) + ends[None, 1:, None] * w64], dim=1)  # (B, n+1, D)
    a_max = torch.cummax(a, dim=1).values.detach()  # the recurrence's running max, shifted
    nums = torch.cat([num0[:, None], num_loc.to(f64)], dim=1)  # (B, n+1, D)
    dens = torch.cat([den0[:, None], den_loc.to(f64)], dim=1)
    l_pos = torch.logcumsumexp(_safe_log(nums) + a, dim=1)
    l_neg = torch.logcumsumexp(_safe_log(-nums) + a, dim=1)
    l_den = torch.logcumsumexp(_safe_log(dens) + a, dim=1)
    num_all = torch.exp(l_pos - a_max) - torch.exp(l_neg - a_max)  # (B, n+1, D), scaled by e^-max
    den_all = torch.exp(l_den - a_max)
    max_all = a_max - ends[None, :, None] * w64
    states = torch.stack([num_all, den_all, max_all], dim=2).to(dtype)  # (B, n+1, 3, D)
    num_in, den_in, max_in = states[:, :-1].unbind(2)  # state entering each chunk, (B, n, D)

    # 3. outputs: carried state + quadratic intra-chunk part. The exponent of token s at
    #    output t is k_s + bias[t, s]: -(t - 1 - s) w in the past, u on the diagonal, -inf
    #    in the future (one small (C, C, D) table, added to the keys in a single pass)
    rel = (pos[:, None] - 1 - pos[None, :])[..., None]  # (C_t, C_s, 1): t - 1 - s
    bias = torch.where(
        rel >= 0, -rel.clamp(min=0) * w, torch.where(rel == -1, u, neg_inf)
    )  # (C, C, D)
    logits = kc[:, :, None, :, :] + bias  # (B, n, C_t, C_s, D)
    init = max_in[:, :, None, :] - pos[None, None, :, None] * w  # (B, n, C, D)
    m = torch.maximum(init, logits.amax(dim=3)).detach()
    e_init = torch.exp(init - m)
    e = torch.exp(logits - m[:, :, :, None, :])  # (B, n, C, C, D)
    num_o = e_init * num_in[:, :, None, :] + (e * vc[:, :, None, :, :]).sum(3)
    den_o = e_init * den_in[:, :, None, :] + e.sum(3)
    o = (num_o / den_o).reshape(bsz, n * c, dim)[:, :length].to(v.dtype)

    final = states[:, -1] if output_final_state else None
    return o, final
