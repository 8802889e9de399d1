"""Mamba-1 selective scan, chunked form (the training path), decays in log space.

Two levels, as in a chunked linear-recurrence scan:

1. inside each chunk of C tokens, the scan from a zero state, run for all L/C chunks at
   once (C vectorised steps instead of L), keeping only each chunk's end state;
2. across chunks, the state at each chunk start is carried by a loop over the L/C chunks,
   with the chunk's total decay ``exp(sum_r delta_r A)`` (a sum of log-decays <= 0);
3. inside each chunk again, all chunks at once, the scan restarted from its true start
   state, reading out ``y_t = C_t · h_t`` as it goes (no (L, E, N) state tensor is kept).

Decays are only ever ``exp`` of sums of ``delta A <= 0`` (never their reciprocals, as the
``exp(-cumsum)`` trick would need), so strong decay underflows to 0 instead of overflowing.
Chunk sizes need not divide L: the tail is padded with ``delta = 0`` (decay 1, no input),
which leaves the state unchanged.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import check_chunk_size, compute_dtype, pad_to_chunks

__all__ = ["chunk_selective_scan"]


def chunk_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked selective scan. Same arguments and results as :func:`naive_selective_scan`,
    plus ``chunk_size``."""
    check_chunk_size(chunk_size)
    dtype = compute_dtype(u.dtype)
    bsz, length, e = u.shape
    c = min(chunk_size, length)
    uf, df, A, Bf, Cf = u.to(dtype), delta.to(dtype), A.to(dtype), B.to(dtype), C.to(dtype)
    # time-major chunks: (C, B, n, ...) so that each scan step reads contiguous memory
    log_a = pad_to_chunks(df[..., None] * A, c)  # (B, n, C, E, N), <= 0
    n = log_a.shape[1]
    a_t = torch.exp(log_a).permute(2, 0, 1, 3, 4).contiguous()  # (C, B, n, E, N)
    bx_t = (
        pad_to_chunks((df * uf)[..., None] * Bf[:, :, None, :], c)
        .permute(2, 0, 1, 3, 4)
        .contiguous()
    )
    c_t = pad_to_chunks(Cf, c).permute(2, 0, 1, 3).contiguous()  # (C, B, n, N)

    # unbind (not indexing) inside loops: its backward stacks the gradients once instead of
    # filling a full-size zero tensor per step
    a_steps, bx_steps, c_steps = a_t.unbind(0), bx_t.unbind(0), c_t.unbind(0)

    # 1. each chunk's end state from a zero start, all chunks at once
    h = torch.zeros_like(bx_steps[0])  # (B, n, E, N)
    for a_s, bx_s in zip(a_steps, bx_steps):
        h = a_s * h + bx_s
    chunk_decay = torch.exp(log_a.sum(dim=2))  # (B, n, E, N): exp of the chunk's log-decay

    # 2. carry the state across chunks
    state = (
        torch.zeros(bsz, e, A.shape[1], device=u.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    starts = []
    for decay_j, h_j in zip(chunk_decay.unbind(1), h.unbind(1)):
        starts.append(state)
        state = decay_j * state + h_j

    # 3. rerun every chunk from its true start state and read out y_t = C_t . h_t
    h = torch.stack(starts, dim=1)  # (B, n, E, N)
    ys = []
    for a_s, bx_s, c_s in zip(a_steps, bx_steps, c_steps):
        h = a_s * h + bx_s
        ys.append(torch.einsum("bjes,bjs->bje", h, c_s))
    y = torch.stack(ys, dim=2).reshape(bsz, n * c, e)[:, :length]  # (B, L, E)
    return y.to(u.dtype), (state if output_final_state else None)
