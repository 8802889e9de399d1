"""RWKV-4 WKV, chunkwise-parallel form: the training path.

The sequence is cut into chunks of C tokens. Inside a chunk the outputs are the quadratic
weighted averages of :mod:`.naive` (a (C, C) weight matrix per channel, all chunks at once);
across chunks only the (B, 3, D) state is carried, by a short loop over the L/C chunks in the
same max-stabilised log form as the recurrence. Every exponent is shifted by its own running
maximum before ``exp``, so nothing overflows. Chunk sizes need not divide L.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_chunk_size, compute_dtype, pad_to_chunks
from seedbed.sequence_models.mixers.rwkv.naive import empty_wkv_state

__all__ = ["chunk_wkv"]


def chunk_wkv(
    w: torch.Tensor,
    u: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 32,
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

    # 1. each chunk's own contribution to the state at its end (zero carried state)
    ll = kc - (lengths[:, None] - 1 - pos)[None, :, :, None] * w  # (B, n, C, D)
    ll = torch.where(valid[None, :, :, None], ll, neg_inf)
    m_loc = ll.amax(dim=2).detach()  # (B, n, D)
    e = torch.exp(ll - m_loc[:, :, None, :])
    num_loc, den_loc = (e * vc).sum(2), e.sum(2)  # (B, n, D)

    # 2. carry the state across chunks (loop over n = L/C chunks)
    state = (
        empty_wkv_state(bsz, dim, device=dev, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    num, den, mx = state.unbind(1)
    carried = []
    for j in range(n):
        carried.append(torch.stack([num, den, mx], dim=1))
        decayed = mx - lengths[j] * w
        m_new = torch.maximum(decayed, m_loc[:, j]).detach()
        a, b = torch.exp(decayed - m_new), torch.exp(m_loc[:, j] - m_new)
        num, den, mx = a * num + b * num_loc[:, j], a * den + b * den_loc[:, j], m_new
    num_in, den_in, max_in = torch.stack(carried, dim=1).unbind(2)  # (B, n, D) each

    # 3. outputs: carried state + quadratic intra-chunk part
    rel = pos[:, None] - 1 - pos[None, :]  # (C_t, C_s): t - 1 - s
    logits = kc[:, :, None, :, :] - rel[None, None, :, :, None] * w  # (B, n, C_t, C_s, D)
    eye = torch.eye(c, dtype=torch.bool, device=dev)[None, None, :, :, None]
    past = (rel >= 0)[None, None, :, :, None]
    diag = (u + kc)[:, :, :, None, :]  # (B, n, C, 1, D)
    logits = torch.where(eye, diag, torch.where(past, logits, neg_inf))
    init = max_in[:, :, None, :] - pos[None, None, :, None] * w  # (B, n, C, D)
    m = torch.maximum(init, logits.amax(dim=3)).detach()
    e_init = torch.exp(init - m)
    e = torch.exp(logits - m[:, :, :, None, :])  # (B, n, C, C, D)
    num_o = e_init * num_in[:, :, None, :] + (e * vc[:, :, None, :, :]).sum(3)
    den_o = e_init * den_in[:, :, None, :] + e.sum(3)
    o = (num_o / den_o).reshape(bsz, n * c, dim)[:, :length].to(v.dtype)

    final = torch.stack([num, den, mx], dim=1) if output_final_state else None
    return o, final
