"""Retention, chunkwise-parallel form (the training path).

Chunks of C tokens: inside a chunk the quadratic form with the decay mask (all chunks at
once); across chunks the (H, D_k, D_v) state, decayed by gamma^C, carried by a loop over the
L/C chunks. Decays are exponentials of non-positive log-decays, so they cannot overflow.
Chunk sizes need not divide L.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_chunk_size, compute_dtype, pad_to_chunks
from seedbed.sequence_models.mixers.retnet._checks import check_retention_inputs
from seedbed.sequence_models.mixers.retnet.naive import retention_log_decay

__all__ = ["chunk_retention"]


def chunk_retention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunkwise retention. Same arguments, results and errors as :func:`naive_retention`,
    plus ``chunk_size`` (a bad one raises ``ValueError``)."""
    check_chunk_size(chunk_size)
    check_retention_inputs("chunk_retention", q, k, v, initial_state)
    dtype = compute_dtype(q.dtype)
    bsz, length, n_heads, dk = q.shape
    dv = v.shape[-1]
    if length == 0:
        s0 = (
            torch.zeros(bsz, n_heads, dk, dv, device=q.device, dtype=dtype)
            if initial_state is None
            else initial_state.to(dtype)
        )
        return v.new_empty(bsz, 0, n_heads, dv), (s0 if output_final_state else None)
    scale = dk**-0.5 if scale is None else scale
    c = min(chunk_size, length)
    dev = q.device
    qc = pad_to_chunks(q.to(dtype) * scale, c)  # (B, n, C, H, D_k)
    kc = pad_to_chunks(k.to(dtype), c)
    vc = pad_to_chunks(v.to(dtype), c)  # (B, n, C, H, D_v)
    n = qc.shape[1]
    log_g = retention_log_decay(n_heads, device=dev, dtype=dtype)  # (H,)
    lengths = torch.full((n,), c, device=dev, dtype=dtype)
    lengths[-1] = length - (n - 1) * c
    pos = torch.arange(c, device=dev, dtype=dtype)

    # intra-chunk: (scale Q K^T ⊙ D) V
    diff = pos[:, None] - pos[None, :]
    mask = torch.exp(diff.clamp(min=0)[None] * log_g[:, None, None]) * (diff >= 0)  # (H, C, C)
    scores = torch.einsum("bnihd,bnjhd->bnhij", qc, kc) * mask
    o = torch.einsum("bnhij,bnjhd->bnihd", scores, vc)  # (B, n, C, H, D_v)

    # each chunk's own state at its end: sum_j gamma^(len-1-j) k_j^T v_j
    expo = (lengths[:, None] - 1 - pos[None, :]).clamp(min=0)  # (n, C)
    decay_out = torch.exp(expo[:, :, None] * log_g) * (pos[None, :] < lengths[:, None])[..., None]
    local = torch.einsum("bnjhk,bnjhv->bnhkv", kc * decay_out[None, :, :, :, None], vc)

    # carry the state across chunks
    state = (
        torch.zeros(bsz, n_heads, dk, dv, device=dev, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    carried = []
    chunk_decay = torch.exp(lengths[:, None] * log_g)  # (n, H): gamma^len
    for decay_j, local_j in zip(chunk_decay.unbind(0), local.unbind(1)):  # unbind: cheap backward
        carried.append(state)
        state = decay_j[None, :, None, None] * state + local_j
    s_in = torch.stack(carried, dim=1)  # (B, n, H, D_k, D_v)

    decay_in = torch.exp((pos[:, None] + 1) * log_g[None, :])  # (C, H): gamma^(i+1)
    o = o + torch.einsum("bnihk,bnhkv->bnihv", qc * decay_in[None, None, :, :, None], s_in)
    o = o.reshape(bsz, n * c, n_heads, dv)[:, :length]
    return o.to(v.dtype), (state if output_final_state else None)
